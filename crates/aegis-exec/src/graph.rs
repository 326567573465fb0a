//! The immutable [`ExecutionGraph`]: operators, tensors, constants, a deterministic
//! topological order and the static memory plan.
//!
//! **Invariant:** an `ExecutionGraph` is never mutated after [`crate::loader`] builds it; it has
//! no `&mut self` method, so it can be shared (`Arc`) by every execution context.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

pub use crate::kernels::Narrow;

pub use crate::loader::op::{
    BitwiseKind, CompareKind, CoordinateTransform, GeluApproximation, GridPaddingMode, LogicKind,
    MathFn, NearestMode, Op, PadMode, ReduceKind, ResizeMode,
};

/// Index of an operator in an [`ExecutionGraph`] (`0..graph.operators().len()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The position of the operator in [`ExecutionGraph::operators`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Index of a tensor in an [`ExecutionGraph`] (`0..graph.tensors().len()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TensorId(pub(crate) u32);

impl TensorId {
    /// The position of the tensor in [`ExecutionGraph::tensors`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary32 (all activations of supported models).
    F32,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer (shapes, indices).
    I64,
    /// Boolean, one byte per element (0 or 1).
    Bool,
    /// 8-bit unsigned integer (quantized tensors).
    U8,
    /// 8-bit signed integer (quantized tensors).
    I8,
    /// IEEE 754 binary16. Held as f16; operators other than `Cast` compute it in f32
    /// (the loader casts their f16 inputs up and their outputs back down).
    F16,
    /// bfloat16 (8-bit exponent, 7-bit fraction). Held as bf16 and computed like f16.
    BF16,
    /// IEEE 754 binary64. Computed in f64 by the operators whose kernels take it (casts, data
    /// movement, elementwise arithmetic and comparisons, reductions, CumSum); any other
    /// operator on f64 is a typed load error, never a silent narrowing to f32.
    F64,
    /// 16-bit signed integer.
    I16,
    /// 16-bit unsigned integer.
    U16,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit unsigned integer.
    U64,
    /// An 8-bit float, the 4-bit float or a 4-/2-bit integer ([`Narrow`]): one element per
    /// byte, converted by Cast / QuantizeLinear / DequantizeLinear and moved as bytes.
    Narrow(Narrow),
}

impl DType {
    /// A 16-bit float (f16, bf16): stored as itself, computed in f32 (see the loader).
    pub fn is_16bit_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::I64 | DType::F64 | DType::U64 => 8,
            DType::I16 | DType::U16 => 2,
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::Narrow(_) => 1,
        }
    }

    /// The ONNX `TensorProto.DataType` code, if we support it.
    pub fn from_onnx(code: i32) -> Option<DType> {
        match code {
            1 => Some(DType::F32),
            6 => Some(DType::I32),
            7 => Some(DType::I64),
            9 => Some(DType::Bool),
            2 => Some(DType::U8),
            3 => Some(DType::I8),
            10 => Some(DType::F16),
            16 => Some(DType::BF16),
            11 => Some(DType::F64),
            5 => Some(DType::I16),
            4 => Some(DType::U16),
            12 => Some(DType::U32),
            13 => Some(DType::U64),
            _ => Narrow::from_onnx(code).map(DType::Narrow),
        }
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::F16 => 10,
            DType::BF16 => 16,
            DType::F64 => 11,
            DType::I16 => 5,
            DType::U16 => 4,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::Narrow(n) => n.onnx_code(),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Narrow(n) => return n.fmt(f),
        })
    }
}

/// The value of a constant tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `DType::F32`.
    F32(Vec<f32>),
    /// `DType::I32`.
    I32(Vec<i32>),
    /// `DType::I64`.
    I64(Vec<i64>),
    /// `DType::Bool`, one byte (0 or 1) per element.
    Bool(Vec<u8>),
    /// `DType::U8`.
    U8(Vec<u8>),
    /// `DType::I8`.
    I8(Vec<i8>),
    /// `DType::F16`, as IEEE binary16 bit patterns.
    F16(Vec<u16>),
    /// `DType::BF16`, as bfloat16 bit patterns.
    BF16(Vec<u16>),
    /// `DType::F64`.
    F64(Vec<f64>),
    /// `DType::I16`.
    I16(Vec<i16>),
    /// `DType::U16`.
    U16(Vec<u16>),
    /// `DType::U32`.
    U32(Vec<u32>),
    /// `DType::U64`.
    U64(Vec<u64>),
    /// `DType::Narrow`, one byte per element (see [`Narrow`]).
    Narrow(Narrow, Vec<u8>),
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
            TensorData::I8(_) => DType::I8,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::F64(_) => DType::F64,
            TensorData::I16(_) => DType::I16,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::Narrow(n, _) => DType::Narrow(*n),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) | TensorData::U8(v) | TensorData::Narrow(_, v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::F16(v) | TensorData::BF16(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The little-endian bytes, as they would be uploaded to a device.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
            TensorData::I64(v) => bytemuck::cast_slice(v),
            TensorData::Bool(v) | TensorData::U8(v) | TensorData::Narrow(_, v) => v,
            TensorData::I8(v) => bytemuck::cast_slice(v),
            TensorData::F16(v) | TensorData::BF16(v) => bytemuck::cast_slice(v),
            TensorData::F64(v) => bytemuck::cast_slice(v),
            TensorData::I16(v) => bytemuck::cast_slice(v),
            TensorData::U16(v) => bytemuck::cast_slice(v),
            TensorData::U32(v) => bytemuck::cast_slice(v),
            TensorData::U64(v) => bytemuck::cast_slice(v),
        }
    }

    /// The f32 elements, if this is `F32`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i64 elements, if this is `I64`.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match self {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }
}

impl AsRef<[u8]> for TensorData {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// What a tensor is to the graph (which decides where its memory lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// A graph input, written by the caller; planned in the arena.
    Input,
    /// A graph output produced by an operator; planned in the arena, alive to the end.
    Output,
    /// An intermediate produced and consumed by operators; planned in the arena.
    Activation,
    /// A weight or a value folded at load; owned by the graph, not in the arena. A graph output
    /// whose value was computed entirely at load is also a `Constant`.
    Constant,
}

/// Static description of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The ONNX value name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Static shape (every dimension known at load).
    pub shape: Vec<usize>,
    /// `product(shape) * dtype.size_bytes()`, checked at load.
    pub byte_size: u64,
    /// Role of the tensor.
    pub kind: TensorKind,
}

impl TensorInfo {
    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One operator of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorNode {
    /// The ONNX node name (or `op_type#index_in_file` when the model left it empty).
    pub name: String,
    /// The validated operator.
    pub op: Op,
    /// Input tensors in the order documented on the [`Op`] variant.
    pub inputs: Vec<TensorId>,
    /// Output tensors.
    pub outputs: Vec<TensorId>,
}

/// The parts the loader hands over; validated there.
#[derive(Debug)]
pub(crate) struct GraphParts {
    pub(crate) name: String,
    pub(crate) opset: i64,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) constants: Vec<Option<Arc<TensorData>>>,
    pub(crate) nodes: Vec<OperatorNode>,
    pub(crate) inputs: Vec<TensorId>,
    pub(crate) outputs: Vec<TensorId>,
    pub(crate) order: Vec<NodeId>,
    pub(crate) plan: aegis_memory::AllocationPlan,
}

/// An immutable, validated model: a DAG of operators over statically shaped tensors.
#[derive(Debug)]
pub struct ExecutionGraph {
    name: String,
    opset: i64,
    tensors: Vec<TensorInfo>,
    constants: Vec<Option<Arc<TensorData>>>,
    nodes: Vec<OperatorNode>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    order: Vec<NodeId>,
    producers: Vec<Option<NodeId>>,
    consumers: Vec<Vec<NodeId>>,
    dag: DiGraph<NodeId, TensorId>,
    plan: aegis_memory::AllocationPlan,
}

impl ExecutionGraph {
    pub(crate) fn from_parts(parts: GraphParts) -> Self {
        let GraphParts {
            name,
            opset,
            tensors,
            constants,
            nodes,
            inputs,
            outputs,
            order,
            plan,
        } = parts;
        let mut producers = vec![None; tensors.len()];
        let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); tensors.len()];
        let mut dag = DiGraph::with_capacity(nodes.len(), nodes.len());
        for i in 0..nodes.len() {
            dag.add_node(NodeId(i as u32));
        }
        for (i, node) in nodes.iter().enumerate() {
            for &t in &node.outputs {
                producers[t.index()] = Some(NodeId(i as u32));
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            for &t in &node.inputs {
                let list = &mut consumers[t.index()];
                // A node reading the same tensor twice (x * x) is one consumer.
                if list.last() != Some(&NodeId(i as u32)) {
                    list.push(NodeId(i as u32));
                }
                if let Some(p) = producers[t.index()] {
                    dag.add_edge(NodeIndex::new(p.index()), NodeIndex::new(i), t);
                }
            }
        }
        Self {
            name,
            opset,
            tensors,
            constants,
            nodes,
            inputs,
            outputs,
            order,
            producers,
            consumers,
            dag,
            plan,
        }
    }

    /// The model's name (its path, or the name given to `from_bytes`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The default-domain opset the model imports.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// All operators, indexed by [`NodeId::index`] (in model file order).
    pub fn operators(&self) -> &[OperatorNode] {
        &self.nodes
    }

    /// All tensors, indexed by [`TensorId::index`].
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One operator.
    ///
    /// # Panics
    /// If `id` does not come from this graph (ids are only handed out by the graph itself).
    pub fn node(&self, id: NodeId) -> &OperatorNode {
        &self.nodes[id.index()]
    }

    /// One tensor.
    ///
    /// # Panics
    /// If `id` does not come from this graph.
    pub fn tensor(&self, id: TensorId) -> &TensorInfo {
        &self.tensors[id.index()]
    }

    /// The tensor called `name`, if any (linear scan; for tests and tools).
    pub fn tensor_by_name(&self, name: &str) -> Option<TensorId> {
        self.tensors
            .iter()
            .position(|t| t.name == name)
            .map(|i| TensorId(i as u32))
    }

    /// The value of a constant tensor (`None` for arena tensors or foreign ids).
    pub fn constant_data(&self, id: TensorId) -> Option<&TensorData> {
        self.constants.get(id.index())?.as_deref()
    }

    /// A shared handle on a constant's value, e.g. to move into an upload closure.
    pub fn constant_arc(&self, id: TensorId) -> Option<Arc<TensorData>> {
        self.constants.get(id.index())?.clone()
    }

    /// Graph inputs, in model order.
    pub fn inputs(&self) -> &[TensorId] {
        &self.inputs
    }

    /// Graph outputs, in model order.
    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    /// The operator that writes `t` (`None` for inputs and constants).
    pub fn producer(&self, t: TensorId) -> Option<NodeId> {
        self.producers.get(t.index()).copied().flatten()
    }

    /// The operators that read `t`, ascending.
    pub fn consumers(&self, t: TensorId) -> &[NodeId] {
        self.consumers.get(t.index()).map_or(&[], Vec::as_slice)
    }

    /// Operators whose outputs `id` reads (deduplicated, ascending).
    pub fn predecessors(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .dag
            .neighbors_directed(NodeIndex::new(id.index()), petgraph::Direction::Incoming)
            .map(|n| self.dag[n])
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Operators that read an output of `id` (deduplicated, ascending).
    pub fn successors(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .dag
            .neighbors_directed(NodeIndex::new(id.index()), petgraph::Direction::Outgoing)
            .map(|n| self.dag[n])
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The execution order: a topological order of all operators, identical for identical
    /// model bytes and options.
    pub fn topological_order(&self) -> &[NodeId] {
        &self.order
    }

    /// Layer 2's static arena plan for every non-constant tensor, computed from
    /// [`Self::topological_order`]: step `i` executes `topological_order()[i]`. The planner's
    /// tensor id for a tensor is its [`TensorId::index`].
    pub fn plan(&self) -> &aegis_memory::AllocationPlan {
        &self.plan
    }

    /// Number of operators per ONNX op type.
    pub fn op_histogram(&self) -> BTreeMap<&'static str, usize> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            *h.entry(n.op.onnx_name()).or_insert(0) += 1;
        }
        h
    }

    /// Total bytes of constant data owned by the graph.
    pub fn constant_bytes(&self) -> u64 {
        self.constants
            .iter()
            .flatten()
            .map(|d| d.as_bytes().len() as u64)
            .sum()
    }
}

/// Where each input of a Concat node lies in its output, in bytes, when every input is one
/// contiguous run of the output (every dimension before the axis is 1, so the inputs follow
/// one another); `None` for any other node. The memory plan may then store the inputs at
/// those places ([`aegis_memory::NestHint`]), and the concatenation has nothing to copy.
pub(crate) fn concat_slots(
    op: &Op,
    inputs: &[&TensorInfo],
    output: &TensorInfo,
) -> Option<Vec<u64>> {
    let Op::Concat { axis } = op else {
        return None;
    };
    if output.shape.len() <= *axis || output.shape[..*axis].iter().any(|&d| d != 1) {
        return None;
    }
    let mut at = 0u64;
    let mut slots = Vec::with_capacity(inputs.len());
    for t in inputs {
        if t.dtype != output.dtype {
            return None;
        }
        slots.push(at);
        at = at.checked_add(t.byte_size)?;
    }
    (at == output.byte_size).then_some(slots)
}

/// [`concat_slots`] of a node of `g`.
pub(crate) fn node_concat_slots(g: &ExecutionGraph, node: &OperatorNode) -> Option<Vec<u64>> {
    let infos: Vec<&TensorInfo> = node.inputs.iter().map(|&t| g.tensor(t)).collect();
    let out = g.tensor(*node.outputs.first()?);
    concat_slots(&node.op, &infos, out)
}

/// Whether input `i` of `node`, planned at byte range `input` (offset, length), is already
/// at its place inside the node's output planned at `output`: a Concat whose plan stored the
/// part where the concatenation puts it (see [`concat_slots`]).
pub(crate) fn concat_input_in_place(
    g: &ExecutionGraph,
    node: &OperatorNode,
    i: usize,
    input: (usize, usize),
    output: (usize, usize),
) -> bool {
    let (Some(slots), Some(&t)) = (node_concat_slots(g, node), node.inputs.get(i)) else {
        return false;
    };
    let Some(&slot) = slots.get(i) else {
        return false;
    };
    let at = output.0 + slot as usize;
    input.0 == at && input.1 as u64 == g.tensor(t).byte_size && at + input.1 <= output.0 + output.1
}
