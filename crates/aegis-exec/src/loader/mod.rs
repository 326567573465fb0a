//! ONNX loading: `tract-onnx` only decodes the protobuf into `tract_onnx::pb` structures; our
//! code validates them and builds the [`ExecutionGraph`].
//!
//! Pipeline: decode → opset check → every node's op checked (all unsupported ones reported
//! at once) → producers (duplicates), readers (dangling) → stable Kahn order of the file's
//! nodes (cycles) → per node in that order: attributes parsed into an [`Op`], shapes and
//! dtypes inferred, constants folded, `Identity`/`Dropout` removed, an `If` on a constant
//! condition replaced by its taken branch, a `Loop` with a constant trip count unrolled → `BatchNormalization`
//! folded into a preceding `Conv` → dead nodes removed → ids assigned, deterministic
//! topological order, memory plan from Layer 2.

pub(crate) mod consteval;
pub(crate) mod infer;
mod legacy;
pub(crate) mod node;
pub mod op;
mod subgraph;
pub(crate) mod tensor;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_memory::{
    plan_with_reordering, LifetimeAnalyser, MemoryPlanner, NestHint, ShareHint, TensorUsage,
};
use tract_onnx::pb::{self, ModelProto};
use tract_onnx::tract_hir::prelude::Framework;

use crate::error::ExecError;
use crate::graph::{
    DType, ExecutionGraph, GraphParts, NodeId, Op, OperatorNode, TensorData, TensorId, TensorInfo,
    TensorKind,
};
use crate::kernels::NarrowMode;
use node::{Inferred, NodeCtx, Value};
use tensor::{checked_bytes, decode_tensor, ExternalBase};

/// Lowest and highest default-domain opset we accept (below 7, the operators of
/// `legacy::LEGACY`, read as their opset-7 forms).
pub const OPSET_RANGE: std::ops::RangeInclusive<i64> = 1..=28;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Full shapes for graph inputs, by input name; required for inputs with open (symbolic
    /// or unknown) dimensions, and must agree with the model's fixed dimensions.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Alignment of every arena offset, in bytes (a power of two).
    pub alignment: u64,
    /// Directory for external data when loading from bytes (a file load uses the model's
    /// directory).
    pub external_data_dir: Option<PathBuf>,
    /// Adopt Layer 2's memory-aware step order when it lowers the planned peak
    /// (deterministic either way).
    pub memory_aware_order: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            input_shapes: BTreeMap::new(),
            alignment: 256,
            external_data_dir: None,
            memory_aware_order: true,
        }
    }
}

impl LoadOptions {
    /// Fixes the shape of input `name`.
    pub fn with_input_shape(mut self, name: impl Into<String>, shape: Vec<usize>) -> Self {
        self.input_shapes.insert(name.into(), shape);
        self
    }

    /// Adds overrides in the text form of [`parse_input_shapes`].
    pub fn with_input_shapes_str(mut self, text: &str) -> Result<Self, ExecError> {
        self.input_shapes.extend(parse_input_shapes(text)?);
        Ok(self)
    }
}

fn bad_override(reason: String) -> ExecError {
    ExecError::BadShapeOverride {
        model: String::new(),
        reason,
    }
}

/// The default-domain ONNX operators the loader accepts, each with the first opset it is
/// accepted at (7 = every opset in range), sorted by name.
pub fn supported_ops() -> &'static [(&'static str, i64)] {
    infer::SUPPORTED
}

/// Parses one override `name=d0,d1,...` (e.g. `x=1,3,640,640`; a scalar is `name=`). The
/// name is everything before the last `=`, so names may contain `=`, `:` or `/`.
pub fn parse_input_shape(text: &str) -> Result<(String, Vec<usize>), ExecError> {
    let (name, dims) = text
        .rsplit_once('=')
        .ok_or_else(|| bad_override(format!("'{text}' is not of the form name=d0,d1,...")))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad_override(format!("'{text}' has no input name")));
    }
    let dims = dims.trim();
    let shape = if dims.is_empty() {
        Vec::new()
    } else {
        dims.split(',')
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| bad_override(format!("'{d}' in '{text}' is not a dimension")))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok((name.to_owned(), shape))
}

/// Parses overrides separated by `;` (e.g. `x=1,3,640,640;mask=1,640`).
pub fn parse_input_shapes(text: &str) -> Result<BTreeMap<String, Vec<usize>>, ExecError> {
    let mut out = BTreeMap::new();
    for part in text.split(';').filter(|p| !p.trim().is_empty()) {
        let (name, shape) = parse_input_shape(part)?;
        if out.insert(name.clone(), shape).is_some() {
            return Err(bad_override(format!("input '{name}' given twice")));
        }
    }
    Ok(out)
}

impl ExecutionGraph {
    /// Loads an ONNX file. External data is resolved relative to the file's directory.
    ///
    /// # Errors
    /// Any [`ExecError`]; all are typed, none panics.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self, ExecError> {
        let path = path.as_ref();
        let model = path.display().to_string();
        // Read into memory rather than mmap: a file truncated under us must give an error,
        // not a SIGBUS.
        let bytes = std::fs::read(path).map_err(|e| ExecError::Io {
            model: model.clone(),
            reason: e.to_string(),
        })?;
        let dir = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        load_bytes(&bytes, &model, dir, options)
    }

    /// Loads an ONNX model from memory; `name` identifies it in errors. External data needs
    /// [`LoadOptions::external_data_dir`].
    ///
    /// # Errors
    /// Any [`ExecError`]; all are typed, none panics.
    pub fn from_bytes(bytes: &[u8], name: &str, options: &LoadOptions) -> Result<Self, ExecError> {
        load_bytes(bytes, name, options.external_data_dir.as_deref(), options)
    }
}

fn load_bytes(
    bytes: &[u8],
    model: &str,
    dir: Option<&Path>,
    options: &LoadOptions,
) -> Result<ExecutionGraph, ExecError> {
    let mut reader = bytes;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut reader)
        .map_err(|e| ExecError::Parse {
            model: model.to_owned(),
            reason: format!("{e:#}"),
        })?;
    build(&proto, model, ExternalBase { dir }, options)
}

/// DequantizeLinear's `output_dtype` attribute (opset 23 on), when set: `Some(Some(type))`
/// for a type we know, `Some(None)` for one we do not (the node's inference reports it).
fn dequantize_output_dtype(n: &pb::NodeProto, opset: i64) -> Option<Option<DType>> {
    if n.op_type != "DequantizeLinear" || opset < 23 {
        return None;
    }
    let code = n.attribute.iter().find(|a| a.name == "output_dtype")?.i;
    (code != 0).then(|| i32::try_from(code).ok().and_then(DType::from_onnx))
}

/// A runtime node collected while loading, before ids are assigned.
#[derive(Debug)]
struct Pending {
    file_index: usize,
    name: String,
    op: Op,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Load state for one model.
struct Loader<'a> {
    model: &'a str,
    opset: i64,
    base: ExternalBase<'a>,
    values: HashMap<String, Value>,
    /// Output names of removed `Identity`/`Dropout` → the (resolved) name they forward.
    alias: HashMap<String, String>,
    /// Declared outputs we do not compute, with the reason.
    unavailable: HashMap<String, String>,
    pending: Vec<Pending>,
    /// Bytes of folded constants still allowed (see `tensor::MAX_FOLDED_BYTES`).
    const_budget: u64,
}

fn node_display_name(n: &pb::NodeProto, i: usize) -> String {
    if n.name.is_empty() {
        format!("{}#{i}", n.op_type)
    } else {
        n.name.clone()
    }
}

/// Pushes `(op, node name)` for every node of `nodes` (display names `names`) whose operator
/// AegisRT does not run, looking inside `If` branches (`If#3/then/...`) and `Loop` bodies
/// (`Loop#2/body/...`).
fn collect_unsupported(
    nodes: &[pb::NodeProto],
    names: &[String],
    opset: i64,
    out: &mut Vec<(String, String)>,
) {
    for (n, name) in nodes.iter().zip(names) {
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        if !default_domain {
            out.push((format!("{}::{}", n.domain, n.op_type), name.clone()));
        } else if !infer::is_supported(&n.op_type, opset) {
            out.push((n.op_type.clone(), name.clone()));
        } else if matches!(n.op_type.as_str(), "If" | "Loop" | "Scan") {
            for a in &n.attribute {
                if let Some(g) = &a.g {
                    let tag = a.name.trim_end_matches("_branch");
                    let inner: Vec<String> = g
                        .node
                        .iter()
                        .enumerate()
                        .map(|(i, bn)| format!("{name}/{tag}/{}", node_display_name(bn, i)))
                        .collect();
                    collect_unsupported(&g.node, &inner, opset, out);
                }
            }
        }
    }
}

fn build(
    proto: &ModelProto,
    model: &str,
    base: ExternalBase<'_>,
    options: &LoadOptions,
) -> Result<ExecutionGraph, ExecError> {
    let parse_err = |reason: &str| ExecError::Parse {
        model: model.to_owned(),
        reason: reason.to_owned(),
    };
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| parse_err("the model has no graph"))?;
    let opset = proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or_else(|| ExecError::UnsupportedOpset {
            model: model.to_owned(),
            domain: String::new(),
            version: 0,
        })?;
    if !OPSET_RANGE.contains(&opset) {
        return Err(ExecError::UnsupportedOpset {
            model: model.to_owned(),
            domain: String::new(),
            version: opset,
        });
    }
    let names: Vec<String> = graph
        .node
        .iter()
        .enumerate()
        .map(|(i, n)| node_display_name(n, i))
        .collect();

    // Every unsupported node, in file order (inside `If` branches too).
    let mut unsupported: Vec<(String, String)> = Vec::new();
    collect_unsupported(&graph.node, &names, opset, &mut unsupported);
    if !unsupported.is_empty() {
        return Err(ExecError::UnsupportedOps {
            model: model.to_owned(),
            ops: unsupported,
        });
    }

    // Producers: initializers, graph inputs, node outputs; each name at most once.
    let mut producer: HashMap<&str, String> = HashMap::new();
    let mut node_of: HashMap<&str, usize> = HashMap::new();
    let dup = |t: &str, first: &str, second: String| ExecError::DuplicateProducer {
        model: model.to_owned(),
        tensor: t.to_owned(),
        first: first.to_owned(),
        second,
    };
    for init in &graph.initializer {
        if init.name.is_empty() {
            return Err(parse_err("an initializer has no name"));
        }
        if let Some(first) = producer.insert(&init.name, "initializer".into()) {
            return Err(dup(&init.name, &first, "initializer".into()));
        }
    }
    let initializer_names: HashSet<&str> =
        graph.initializer.iter().map(|i| i.name.as_str()).collect();
    let mut real_inputs = Vec::new();
    let mut seen_inputs = HashSet::new();
    for inp in &graph.input {
        if !seen_inputs.insert(inp.name.as_str()) {
            return Err(dup(&inp.name, "graph input", "graph input".into()));
        }
        // Before IR 4 initializers were also listed as inputs: those are constants.
        if initializer_names.contains(inp.name.as_str()) {
            continue;
        }
        if inp.name.is_empty() {
            return Err(parse_err("a graph input has no name"));
        }
        producer.insert(&inp.name, "graph input".into());
        real_inputs.push(inp);
    }
    for (i, n) in graph.node.iter().enumerate() {
        for out in n.output.iter().filter(|o| !o.is_empty()) {
            if let Some(first) = producer.insert(out, format!("node {}", names[i])) {
                return Err(dup(out, &first, format!("node {}", names[i])));
            }
            node_of.insert(out, i);
        }
    }
    for (i, n) in graph.node.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if !producer.contains_key(inp.as_str()) {
                return Err(ExecError::DanglingInput {
                    model: model.to_owned(),
                    node: names[i].clone(),
                    tensor: inp.clone(),
                });
            }
        }
    }
    if graph.output.is_empty() {
        return Err(parse_err("the graph has no outputs"));
    }
    for out in &graph.output {
        if !producer.contains_key(out.name.as_str()) {
            return Err(ExecError::DanglingInput {
                model: model.to_owned(),
                node: "graph output".into(),
                tensor: out.name.clone(),
            });
        }
    }
    for name in options.input_shapes.keys() {
        if !real_inputs.iter().any(|i| &i.name == name) {
            return Err(ExecError::BadShapeOverride {
                model: model.to_owned(),
                reason: format!("the model has no input '{name}'"),
            });
        }
    }

    // Stable Kahn over the file's nodes: ready nodes run in file order.
    let n_nodes = graph.node.len();
    let mut indeg = vec![0usize; n_nodes];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n_nodes];
    for (i, n) in graph.node.iter().enumerate() {
        // An `If`'s branches read enclosing values by name: those order it too.
        let implicit = subgraph::outer_reads(n);
        let reads = n.input.iter().chain(&implicit).filter(|s| !s.is_empty());
        for inp in reads {
            if let Some(&p) = node_of.get(inp.as_str()) {
                indeg[i] += 1;
                succ[p].push(i);
            }
        }
    }
    let order = stable_kahn(&mut indeg, &succ);
    if order.len() != n_nodes {
        let placed: HashSet<usize> = order.iter().copied().collect();
        return Err(ExecError::Cycle {
            model: model.to_owned(),
            nodes: (0..n_nodes)
                .filter(|i| !placed.contains(i))
                .map(|i| names[i].clone())
                .collect(),
        });
    }

    let mut ld = Loader {
        model,
        opset,
        base,
        values: HashMap::new(),
        alias: HashMap::new(),
        unavailable: HashMap::new(),
        pending: Vec::new(),
        const_budget: tensor::MAX_FOLDED_BYTES,
    };
    for init in &graph.initializer {
        let (shape, data) = decode_tensor(model, init, base)?;
        ld.values.insert(
            init.name.clone(),
            Value {
                dtype: data.dtype(),
                shape,
                konst: Some(Arc::new(data)),
            },
        );
    }
    for inp in &real_inputs {
        let v = input_value(model, inp, options)?;
        ld.values.insert(inp.name.clone(), v);
    }
    for &i in &order {
        ld.process(&graph.node[i], i, &names[i])?;
    }

    let outputs: Vec<String> = graph.output.iter().map(|o| ld.resolve(&o.name)).collect();
    for (decl, resolved) in graph.output.iter().zip(&outputs) {
        if let Some(reason) = ld.unavailable.get(resolved) {
            return Err(ExecError::InvalidNode {
                model: model.to_owned(),
                node: "graph output".into(),
                reason: format!("output '{}' is {reason}", decl.name),
            });
        }
    }
    // Intermediate shapes the exporter declared must agree with ours (static dims only).
    for vi in &graph.value_info {
        if let Some(v) = ld.values.get(&ld.resolve(&vi.name)) {
            check_declared(model, vi, "value_info", v.dtype, &v.shape)?;
        }
    }
    ld.fold_batch_norms(&outputs);
    ld.fold_channel_affine(&outputs);
    ld.untranspose_gemm_weights(&outputs);
    ld.remove_dead(&outputs);
    assemble(ld, graph, &real_inputs, &outputs, options)
}

/// Kahn's algorithm; among ready nodes the lowest index goes first. `indeg` is consumed.
fn stable_kahn(indeg: &mut [usize], succ: &[Vec<usize>]) -> Vec<usize> {
    let mut ready: BinaryHeap<Reverse<usize>> = indeg
        .iter()
        .enumerate()
        .filter(|(_, &d)| d == 0)
        .map(|(i, _)| Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(indeg.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &s in &succ[i] {
            indeg[s] -= 1;
            if indeg[s] == 0 {
                ready.push(Reverse(s));
            }
        }
    }
    order
}

/// The static shape of a graph input: the model's dims, with the caller's override.
fn input_value(
    model: &str,
    inp: &pb::ValueInfoProto,
    options: &LoadOptions,
) -> Result<Value, ExecError> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Ty;
    let Some(Ty::TensorType(tt)) = inp.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(ExecError::InvalidNode {
            model: model.to_owned(),
            node: format!("graph input {}", inp.name),
            reason: "not a tensor input".into(),
        });
    };
    let dtype = DType::from_onnx(tt.elem_type).ok_or_else(|| ExecError::UnsupportedDType {
        model: model.to_owned(),
        tensor: inp.name.clone(),
        dtype: tensor::onnx_dtype_name(tt.elem_type),
    })?;
    let over = options.input_shapes.get(&inp.name);
    let shape = match (&tt.shape, over) {
        (None, Some(o)) => o.clone(),
        (None, None) => {
            return Err(ExecError::OpenDimension {
                model: model.to_owned(),
                input: inp.name.clone(),
                dim: 0,
                symbol: "unknown rank".into(),
            })
        }
        (Some(s), over) => {
            if let Some(o) = over {
                if o.len() != s.dim.len() {
                    return Err(ExecError::BadShapeOverride {
                        model: model.to_owned(),
                        reason: format!(
                            "input '{}' has rank {}, the override {o:?} has rank {}",
                            inp.name,
                            s.dim.len(),
                            o.len()
                        ),
                    });
                }
            }
            let mut shape = Vec::with_capacity(s.dim.len());
            for (k, d) in s.dim.iter().enumerate() {
                // Exporters write -1 (or leave the value out) for a dynamic dimension.
                let fixed = match &d.value {
                    Some(Dim::DimValue(v)) if *v >= 0 => Some(*v as usize),
                    _ => None,
                };
                match (fixed, over) {
                    (Some(f), Some(o)) if o[k] != f => {
                        return Err(ExecError::BadShapeOverride {
                            model: model.to_owned(),
                            reason: format!(
                                "input '{}' dimension {k} is fixed to {f} in the model, the override says {}",
                                inp.name, o[k]
                            ),
                        })
                    }
                    (Some(f), _) => shape.push(f),
                    (None, Some(o)) => shape.push(o[k]),
                    (None, None) => {
                        return Err(ExecError::OpenDimension {
                            model: model.to_owned(),
                            input: inp.name.clone(),
                            dim: k,
                            symbol: match &d.value {
                                Some(Dim::DimParam(p)) => p.clone(),
                                Some(Dim::DimValue(v)) => v.to_string(),
                                None => String::new(),
                            },
                        })
                    }
                }
            }
            shape
        }
    };
    if checked_bytes(&shape, dtype).is_none() {
        return Err(ExecError::Overflow {
            model: model.to_owned(),
            what: format!("graph input '{}' of shape {shape:?}", inp.name),
        });
    }
    Ok(Value {
        dtype,
        shape,
        konst: None,
    })
}

impl Loader<'_> {
    fn resolve(&self, name: &str) -> String {
        self.alias
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// The f32 twin of 16-bit float (f16, bf16) tensor `src` (any other tensor is returned
    /// as is): a constant widened now, or the output of a `Cast` to f32 added once and shared
    /// by every reader. Why: as onnxruntime's CPU provider does, operators other than `Cast`
    /// compute 16-bit float tensors in f32 and round their results back, so the kernels stay
    /// f32-only.
    fn widened(&mut self, src: &str, file_index: usize) -> Result<String, ExecError> {
        let Some(v) = self.values.get(src).filter(|v| v.dtype.is_16bit_float()) else {
            return Ok(src.to_owned());
        };
        // Not `{src}:f32`: that names the unrounded result of the node that made `src`.
        let twin = format!("{src}:from_{}", v.dtype);
        if self.values.contains_key(&twin) {
            return Ok(twin);
        }
        let shape = v.shape.clone();
        let konst = match &v.konst {
            Some(data) => {
                let wide = consteval::cast(data, DType::F32);
                let bytes = wide.as_bytes().len() as u64;
                if bytes > self.const_budget {
                    return Err(ExecError::Overflow {
                        model: self.model.to_owned(),
                        what: format!("f32 copy of f16 constant '{src}' of shape {shape:?}"),
                    });
                }
                self.const_budget -= bytes;
                Some(Arc::new(wide))
            }
            None => {
                self.pending.push(Pending {
                    file_index,
                    name: format!("{src}:to_f32"),
                    op: Op::Cast {
                        to: DType::F32,
                        narrow: NarrowMode::default(),
                    },
                    inputs: vec![src.to_owned()],
                    outputs: vec![twin.clone()],
                });
                None
            }
        };
        self.values.insert(
            twin.clone(),
            Value {
                dtype: DType::F32,
                shape,
                konst,
            },
        );
        Ok(twin)
    }

    /// `Attention`'s result type when it is a 16-bit float: that of `Q`, which `K`, `V` and
    /// the cache must share (a 16-bit mask alone does not make the outputs 16-bit).
    fn attention_dtype(
        &self,
        resolved: &[Option<String>],
        name: &str,
    ) -> Result<Option<DType>, ExecError> {
        let dtype = |i: usize| {
            resolved
                .get(i)
                .and_then(Option::as_ref)
                .and_then(|r| self.values.get(r))
                .map(|v| v.dtype)
        };
        let q = dtype(0);
        for (i, what) in [(1, "K"), (2, "V"), (4, "past_key"), (5, "past_value")] {
            if let Some(t) = dtype(i).filter(|&t| Some(t) != q) {
                return Err(ExecError::ShapeMismatch {
                    model: self.model.to_owned(),
                    node: name.to_owned(),
                    reason: format!(
                        "{what} has type {t} and Q {}: AegisRT runs Attention on one element type",
                        q.map_or_else(|| "?".to_owned(), |q| q.to_string())
                    ),
                });
            }
        }
        Ok(q.filter(|d| d.is_16bit_float()))
    }

    fn process(
        &mut self,
        n: &pb::NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<(), ExecError> {
        let scaler;
        let n = if n.op_type == "ImageScaler" {
            scaler = self.image_scaler(n, name)?;
            &scaler
        } else {
            n
        };
        let rewritten;
        let n = if self.opset < 7 {
            rewritten = self.legacy_node(n, file_index, name)?;
            &rewritten
        } else {
            n
        };
        match n.op_type.as_str() {
            "If" => return self.process_if(n, file_index, name),
            "Loop" => return self.process_loop(n, file_index, name),
            "Scan" => return self.process_scan(n, file_index, name),
            _ => {}
        }
        let resolved: Vec<Option<String>> = n
            .input
            .iter()
            .map(|s| (!s.is_empty()).then(|| self.resolve(s)))
            .collect();
        for r in resolved.iter().flatten() {
            if let Some(reason) = self.unavailable.get(r) {
                return Err(ExecError::InvalidNode {
                    model: self.model.to_owned(),
                    node: name.to_owned(),
                    reason: format!("reads '{r}', which is {reason}"),
                });
            }
        }
        // 16-bit float operands of anything but a cast are read through their f32 twins, and
        // the node's f32 results are rounded back to that type below (`narrow_to`).
        let as_read = resolved.clone();
        // Casts convert 16-bit values themselves; BitCast and TensorScatter move their bytes.
        let wide_from = if matches!(
            n.op_type.as_str(),
            "Cast" | "CastLike" | "BitCast" | "TensorScatter"
        ) {
            None
        } else {
            resolved.iter().flatten().find_map(|r| {
                self.values
                    .get(r)
                    .map(|v| v.dtype)
                    .filter(|d| d.is_16bit_float())
            })
        };
        let narrow = wide_from.is_some();
        // DequantizeLinear's `output_dtype` (opset 23) names the result type whatever the
        // scale's: the f32 result is rounded to it when it is a 16-bit float.
        let narrow_to = match dequantize_output_dtype(n, self.opset) {
            Some(to) => to.filter(|d| d.is_16bit_float()),
            None if n.op_type == "Attention" => self.attention_dtype(&resolved, name)?,
            None => wide_from,
        };
        let resolved: Vec<Option<String>> = if narrow {
            resolved
                .into_iter()
                .map(|r| r.map(|r| self.widened(&r, file_index)).transpose())
                .collect::<Result<_, _>>()?
        } else {
            resolved
        };
        // Which outputs are the 16-bit operands' type (LayerNormalization's mean and inverse
        // standard deviation are its stash type, f32, whatever the input's).
        let narrowed_outputs = if n.op_type == "LayerNormalization" {
            1
        } else {
            usize::MAX
        };
        let mut inputs = Vec::with_capacity(resolved.len());
        for r in &resolved {
            match r {
                None => inputs.push(None),
                Some(r) => match self.values.get(r) {
                    Some(v) => inputs.push(Some(v)),
                    // Validated up front: every read name has a producer processed earlier.
                    None => {
                        return Err(ExecError::DanglingInput {
                            model: self.model.to_owned(),
                            node: name.to_owned(),
                            tensor: r.clone(),
                        })
                    }
                },
            }
        }
        let ctx = NodeCtx {
            model: self.model,
            name,
            op_type: &n.op_type,
            opset: self.opset,
            attrs: &n.attribute,
            inputs,
            num_outputs: n.output.len(),
            base: self.base,
            const_budget: self.const_budget,
        };
        let inferred = infer::infer(&ctx)?;
        // Fold nodes whose inputs are all constants, when the evaluator covers the op.
        let inferred = match inferred {
            Inferred::Node {
                op,
                inputs,
                outputs,
            } => {
                for (dt, shape) in &outputs {
                    if checked_bytes(shape, *dt).is_none() {
                        return Err(ctx.overflow(format!("output of shape {shape:?}")));
                    }
                }
                let args: Option<Vec<consteval::Arg<'_>>> = inputs
                    .iter()
                    .map(|&i| {
                        let v = ctx.opt_input(i)?;
                        Some((v.konst.as_deref()?, v.shape.as_slice()))
                    })
                    .collect();
                match args {
                    Some(args) => match consteval::eval(&ctx, &op, &args, &outputs)? {
                        Some(datas) => Inferred::Const(
                            outputs
                                .into_iter()
                                .zip(datas)
                                .map(|((_, s), d)| (s, d))
                                .collect(),
                        ),
                        None => Inferred::Node {
                            op,
                            inputs,
                            outputs,
                        },
                    },
                    None => Inferred::Node {
                        op,
                        inputs,
                        outputs,
                    },
                }
            }
            other => other,
        };
        drop(ctx);
        let declared = &n.output;
        let mark_rest = |ld: &mut Self, from: usize| {
            for (k, o) in declared.iter().enumerate().skip(from) {
                if !o.is_empty() {
                    ld.unavailable.insert(
                        o.clone(),
                        format!(
                            "output {k} of {} node {name}, which is not supported",
                            n.op_type
                        ),
                    );
                }
            }
        };
        match inferred {
            Inferred::Alias => {
                // An alias forwards the tensor as read: an f16 input stays f16.
                let Some(Some(src)) = as_read.first() else {
                    return Err(ExecError::InvalidNode {
                        model: self.model.to_owned(),
                        node: name.to_owned(),
                        reason: "input 0 is required".into(),
                    });
                };
                if let Some(out) = declared.first().filter(|o| !o.is_empty()) {
                    self.alias.insert(out.clone(), src.clone());
                }
                // Inference Dropout's mask (output 1, bool since opset 10) is all true: a
                // load-time constant.
                let mut handled = 1;
                let mask = declared.get(1).filter(|o| !o.is_empty());
                if let (Some(mask), "Dropout", true) = (mask, n.op_type.as_str(), self.opset >= 10)
                {
                    let shape = self
                        .values
                        .get(src)
                        .map(|v| v.shape.clone())
                        .unwrap_or_default();
                    let bytes = checked_bytes(&shape, DType::Bool)
                        .filter(|&b| b <= tensor::MAX_CONSTANT_BYTES && b <= self.const_budget)
                        .ok_or_else(|| ExecError::Overflow {
                            model: self.model.to_owned(),
                            what: format!("Dropout mask of shape {shape:?} (node {name})"),
                        })?;
                    self.const_budget -= bytes;
                    self.values.insert(
                        mask.clone(),
                        Value {
                            dtype: DType::Bool,
                            shape,
                            konst: Some(Arc::new(TensorData::Bool(vec![1; bytes as usize]))),
                        },
                    );
                    handled = 2;
                }
                mark_rest(self, handled);
            }
            Inferred::Const(list) => {
                let produced = list.len();
                let bytes: u64 = list.iter().map(|(_, d)| d.as_bytes().len() as u64).sum();
                self.const_budget = self.const_budget.saturating_sub(bytes);
                for (k, (shape, data)) in list.into_iter().enumerate() {
                    let data = match narrow_to {
                        Some(to) if k < narrowed_outputs && data.dtype() == DType::F32 => {
                            consteval::cast(&data, to)
                        }
                        _ => data,
                    };
                    let numel = tensor::checked_numel(&shape);
                    if numel != Some(data.len()) {
                        return Err(ExecError::ShapeMismatch {
                            model: self.model.to_owned(),
                            node: name.to_owned(),
                            reason: format!(
                                "constant of shape {shape:?} holds {} elements",
                                data.len()
                            ),
                        });
                    }
                    if let Some(out) = declared.get(k).filter(|o| !o.is_empty()) {
                        self.values.insert(
                            out.clone(),
                            Value {
                                dtype: data.dtype(),
                                shape,
                                konst: Some(Arc::new(data)),
                            },
                        );
                    }
                }
                mark_rest(self, produced);
            }
            Inferred::Node {
                op,
                inputs,
                outputs,
            } => {
                if outputs.len() > declared.len() {
                    return Err(ExecError::InvalidNode {
                        model: self.model.to_owned(),
                        node: name.to_owned(),
                        reason: format!(
                            "{} declares {} outputs, needs {}",
                            n.op_type,
                            declared.len(),
                            outputs.len()
                        ),
                    });
                }
                let mut out_names = Vec::with_capacity(outputs.len());
                // (f32 result, the f16 tensor the model names) per narrowed output.
                let mut narrowings = Vec::new();
                for (k, (dtype, shape)) in outputs.into_iter().enumerate() {
                    // An output the model does not name still needs a buffer to be written.
                    let oname = if declared[k].is_empty() {
                        format!("{name}:unnamed_output_{k}")
                    } else {
                        declared[k].clone()
                    };
                    let oname = match narrow_to {
                        Some(to) if k < narrowed_outputs && dtype == DType::F32 => {
                            let wide = format!("{oname}:f32");
                            self.values.insert(
                                oname.clone(),
                                Value {
                                    dtype: to,
                                    shape: shape.clone(),
                                    konst: None,
                                },
                            );
                            narrowings.push((wide.clone(), oname, to));
                            wide
                        }
                        _ => oname,
                    };
                    self.values.insert(
                        oname.clone(),
                        Value {
                            dtype,
                            shape,
                            konst: None,
                        },
                    );
                    out_names.push(oname);
                }
                mark_rest(self, out_names.len());
                let in_names = inputs
                    .iter()
                    .filter_map(|&i| resolved.get(i).cloned().flatten())
                    .collect();
                self.pending.push(Pending {
                    file_index,
                    name: name.to_owned(),
                    op,
                    inputs: in_names,
                    outputs: out_names,
                });
                for (wide, narrow_name, to) in narrowings {
                    self.pending.push(Pending {
                        file_index,
                        name: format!("{narrow_name}:to_{to}"),
                        op: Op::Cast {
                            to,
                            narrow: NarrowMode::default(),
                        },
                        inputs: vec![wide],
                        outputs: vec![narrow_name],
                    });
                }
            }
        }
        Ok(())
    }

    fn consumer_counts(&self, outputs: &[String]) -> HashMap<String, usize> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in &self.pending {
            for i in &p.inputs {
                *counts.entry(i.clone()).or_insert(0) += 1;
            }
        }
        for o in outputs {
            // A graph output is never folded away.
            *counts.entry(o.clone()).or_insert(0) += 2;
        }
        counts
    }

    /// Folds `BatchNormalization(Conv(x, w, b))` into `Conv(x, w', b')` when the Conv output
    /// feeds only the BN and all parameters are constants.
    fn fold_batch_norms(&mut self, outputs: &[String]) {
        let counts = self.consumer_counts(outputs);
        let producer: HashMap<String, usize> = self
            .pending
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.outputs.iter().map(move |o| (o.clone(), i)))
            .collect();
        let mut removed = vec![false; self.pending.len()];
        for bi in 0..self.pending.len() {
            let Op::BatchNormalization { epsilon } = self.pending[bi].op else {
                continue;
            };
            let x = &self.pending[bi].inputs[0];
            let Some(&ci) = producer.get(x) else { continue };
            if counts.get(x).copied() != Some(1) || removed[ci] {
                continue;
            }
            if !matches!(self.pending[ci].op, Op::Conv { .. }) {
                continue;
            }
            let konst = |name: &String| -> Option<&[f32]> {
                self.values.get(name)?.konst.as_deref()?.as_f32()
            };
            let bn = &self.pending[bi];
            let conv = &self.pending[ci];
            let params: Option<Vec<&[f32]>> = bn.inputs[1..5].iter().map(konst).collect();
            let (Some(params), Some(w)) = (params, konst(&conv.inputs[1])) else {
                continue;
            };
            let m = params[0].len();
            let bias: Vec<f32> = match conv.inputs.get(2) {
                Some(b) => match konst(b) {
                    Some(b) => b.to_vec(),
                    None => continue,
                },
                None => vec![0.0; m],
            };
            if m == 0 || w.len() % m != 0 || bias.len() != m {
                continue;
            }
            let per = w.len() / m;
            let (scale, shift, mean, var) = (params[0], params[1], params[2], params[3]);
            let s: Vec<f32> = (0..m)
                .map(|c| scale[c] / (var[c] + epsilon).sqrt())
                .collect();
            let new_w: Vec<f32> = w.iter().enumerate().map(|(i, &v)| v * s[i / per]).collect();
            let new_b: Vec<f32> = (0..m)
                .map(|c| (bias[c] - mean[c]) * s[c] + shift[c])
                .collect();
            let prefix = format!("{}::bn_folded", bn.name);
            let bn_out = bn.outputs[0].clone();
            self.rewrite_conv(ci, &prefix, Some(new_w), new_b, bn_out, outputs);
            removed[bi] = true;
        }
        let mut k = 0;
        self.pending.retain(|_| {
            k += 1;
            !removed[k - 1]
        });
    }

    /// Folds `Mul(Conv(x, w, b), s)` into `Conv(x, w·s, b·s)` and `Add(Conv(x, w, b), t)` into
    /// `Conv(x, w, b + t)` when the Conv output feeds only that node, the weights and bias are
    /// constants, and `s` / `t` are f32 constants that vary at most along the output-channel
    /// axis (so the result's shape is the Conv's). Exporters write a BatchNormalization this
    /// way (inception_v2: Conv → Mul → Add → Relu); folded, each saves two passes over the
    /// activation and lets the Relu fuse into the convolution. Repeats until nothing folds
    /// (a Mul then an Add fold into the same Conv).
    fn fold_channel_affine(&mut self, outputs: &[String]) {
        loop {
            let counts = self.consumer_counts(outputs);
            let producer: HashMap<&str, usize> = self
                .pending
                .iter()
                .enumerate()
                .flat_map(|(i, p)| p.outputs.iter().map(move |o| (o.as_str(), i)))
                .collect();
            let found = self.pending.iter().enumerate().find_map(|(ni, n)| {
                let mul = match n.op {
                    Op::Mul => true,
                    Op::Add => false,
                    _ => return None,
                };
                if n.inputs.len() != 2 {
                    return None;
                }
                // Either operand may be the Conv output (both ops commute).
                (0..2).find_map(|side| {
                    let x = &n.inputs[side];
                    let ci = *producer.get(x.as_str())?;
                    let conv = &self.pending[ci];
                    let foldable =
                        matches!(conv.op, Op::Conv { .. } | Op::BatchNormalization { .. });
                    if !foldable || counts.get(x).copied() != Some(1) {
                        return None;
                    }
                    let k = self.channel_vector(x, &n.inputs[1 - side])?;
                    Some((ni, ci, mul, k))
                })
            });
            let Some((ni, ci, mul, k)) = found else {
                return;
            };
            let folded = if matches!(self.pending[ci].op, Op::Conv { .. }) {
                self.fold_into_conv((ni, ci), mul, &k, outputs)
            } else {
                self.fold_into_batch_norm(ni, ci, mul, &k)
            };
            if !folded {
                return;
            }
        }
    }

    /// `operand`'s values per output channel of the Conv output `x` (length 1 when one value
    /// is broadcast to every channel), when `operand` is an f32 constant that broadcasts to
    /// `x`'s shape without changing it and varies along the channel axis (1) at most.
    fn channel_vector(&self, x: &str, operand: &str) -> Option<Vec<f32>> {
        let xv = self.values.get(x)?;
        let cv = self.values.get(operand)?;
        let data = cv.konst.as_deref()?.as_f32()?;
        let (r, k) = (xv.shape.len(), cv.shape.len());
        if xv.dtype != DType::F32 || r < 2 || k > r {
            return None;
        }
        let m = xv.shape[1];
        let per_channel = cv.shape.iter().enumerate().all(|(j, &d)| {
            let axis = r - k + j;
            d == 1 || (axis == 1 && d == m)
        });
        (per_channel && (data.len() == 1 || data.len() == m)).then(|| data.to_vec())
    }

    /// Applies one fold (see [`Self::fold_channel_affine`]): the Conv gets new constant
    /// weights/bias and the elementwise node's output; the elementwise node is removed.
    fn fold_into_conv(
        &mut self,
        (ni, ci): (usize, usize),
        mul: bool,
        k: &[f32],
        outputs: &[String],
    ) -> bool {
        let konst =
            |name: &String| -> Option<&[f32]> { self.values.get(name)?.konst.as_deref()?.as_f32() };
        let conv = &self.pending[ci];
        let Some(w) = conv.inputs.get(1).and_then(konst) else {
            return false;
        };
        let Some(m) = self
            .values
            .get(&conv.outputs[0])
            .and_then(|v| v.shape.get(1).copied())
        else {
            return false;
        };
        let bias = match conv.inputs.get(2) {
            Some(b) => match konst(b) {
                Some(b) => b.to_vec(),
                None => return false,
            },
            None => vec![0.0; m],
        };
        if m == 0 || w.len() % m != 0 || bias.len() != m {
            return false;
        }
        let per = w.len() / m;
        let at = |c: usize| if k.len() == 1 { k[0] } else { k[c] };
        // An Add leaves the weights as they are (no copy of the filter).
        let (new_w, new_b): (Option<Vec<f32>>, Vec<f32>) = if mul {
            (
                Some(
                    w.iter()
                        .enumerate()
                        .map(|(i, &v)| v * at(i / per))
                        .collect(),
                ),
                (0..m).map(|c| bias[c] * at(c)).collect(),
            )
        } else {
            (None, (0..m).map(|c| bias[c] + at(c)).collect())
        };
        let node = &self.pending[ni];
        let prefix = format!("{}::{}", node.name, if mul { "scaled" } else { "shifted" });
        let out = node.outputs[0].clone();
        self.rewrite_conv(ci, &prefix, new_w, new_b, out, outputs);
        self.pending.remove(ni);
        true
    }

    /// Registers an f32 constant named `name`.
    fn add_f32_constant(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) -> String {
        self.values.insert(
            name.to_owned(),
            Value {
                dtype: DType::F32,
                shape,
                konst: Some(Arc::new(TensorData::F32(data))),
            },
        );
        name.to_owned()
    }

    /// Gives Conv `ci` new constant weights (its filter's shape; `None` keeps them) and bias
    /// (`{prefix}_weight`, `{prefix}_bias`) and makes it write `output` (the output of the node
    /// folded into it). Constants it no longer reads and no other node reads are dropped at
    /// once, so a chain of folds never holds a model's filters twice (inception_v2: 42 MiB).
    fn rewrite_conv(
        &mut self,
        ci: usize,
        prefix: &str,
        w: Option<Vec<f32>>,
        b: Vec<f32>,
        output: String,
        graph_outputs: &[String],
    ) {
        let old_w = self.pending[ci].inputs[1].clone();
        let wname = match w {
            Some(w) => {
                let w_shape = self.values[&old_w].shape.clone();
                self.add_f32_constant(&format!("{prefix}_weight"), w_shape, w)
            }
            None => old_w,
        };
        let m = b.len();
        let bname = self.add_f32_constant(&format!("{prefix}_bias"), vec![m], b);
        let conv = &mut self.pending[ci];
        let replaced: Vec<String> = conv.inputs.drain(1..).collect();
        conv.inputs.push(wname);
        conv.inputs.push(bname);
        conv.outputs[0] = output;
        for name in replaced {
            let read = self.pending.iter().any(|p| p.inputs.contains(&name))
                || graph_outputs.contains(&name);
            if !read && self.values.get(&name).is_some_and(|v| v.konst.is_some()) {
                self.values.remove(&name);
            }
        }
    }

    /// Stores a Gemm's constant `B` of `transB = 1` transposed (`[K, N]`, `transB = 0`) when
    /// `A` has more than one row: the host GEMM packs a row-major `B` far faster than a
    /// transposed one (`kernel_bench` 128x256x256: 0.26 -> 0.16 ms, the transformer's output
    /// projections). A single row keeps `[N, K]`: its dot-product kernel streams that layout.
    /// The old constant is dropped when nothing else reads it, so weights are never held
    /// twice.
    fn untranspose_gemm_weights(&mut self, graph_outputs: &[String]) {
        // One `[K, N]` copy per constant, however many Gemms read it.
        let mut done: HashMap<String, String> = HashMap::new();
        for gi in 0..self.pending.len() {
            let Op::Gemm {
                trans_a,
                trans_b: true,
                ..
            } = self.pending[gi].op
            else {
                continue;
            };
            let (a, b) = match self.pending[gi].inputs.as_slice() {
                [a, b, ..] => (a.clone(), b.clone()),
                _ => continue,
            };
            let rows = match self.values.get(&a).map(|v| v.shape.as_slice()) {
                Some(&[r, c]) => {
                    if trans_a {
                        c
                    } else {
                        r
                    }
                }
                _ => continue,
            };
            if rows <= 1 {
                continue;
            }
            let name = match done.get(&b) {
                Some(name) => name.clone(),
                None => {
                    let Some(v) = self.values.get(&b) else {
                        continue;
                    };
                    let (&[n, k], Some(data)) = (
                        v.shape.as_slice(),
                        v.konst.as_deref().and_then(|d| d.as_f32()),
                    ) else {
                        continue;
                    };
                    let mut t = vec![0.0f32; n * k];
                    // A constant whose length does not match its shape stays as it is: the
                    // Gemm's own checks then name it.
                    if crate::kernels::transpose(data, &[n, k], &[1, 0], &mut t, 1).is_err() {
                        continue;
                    }
                    let name = self.add_f32_constant(&format!("{b}__kn{gi}"), vec![k, n], t);
                    done.insert(b.clone(), name.clone());
                    name
                }
            };
            let gemm = &mut self.pending[gi];
            gemm.inputs[1] = name;
            if let Op::Gemm { trans_b, .. } = &mut gemm.op {
                *trans_b = false;
            }
            let read =
                self.pending.iter().any(|p| p.inputs.contains(&b)) || graph_outputs.contains(&b);
            if !read {
                self.values.remove(&b);
            }
        }
    }

    /// Applies one fold into a BatchNormalization (an affine map per channel: `x·a + b`): a
    /// Mul scales its `scale` and `bias`, an Add shifts its `bias`. The BN gets the node's
    /// output; the node is removed.
    fn fold_into_batch_norm(&mut self, ni: usize, bi: usize, mul: bool, k: &[f32]) -> bool {
        let konst = |name: &String| -> Option<Vec<f32>> {
            Some(self.values.get(name)?.konst.as_deref()?.as_f32()?.to_vec())
        };
        let bn = &self.pending[bi];
        let (Some(scale), Some(bias)) = (
            bn.inputs.get(1).and_then(konst),
            bn.inputs.get(2).and_then(konst),
        ) else {
            return false;
        };
        let m = scale.len();
        if m == 0 || bias.len() != m || (k.len() != 1 && k.len() != m) {
            return false;
        }
        let at = |c: usize| if k.len() == 1 { k[0] } else { k[c] };
        let (new_scale, new_bias): (Vec<f32>, Vec<f32>) = if mul {
            (
                (0..m).map(|c| scale[c] * at(c)).collect(),
                (0..m).map(|c| bias[c] * at(c)).collect(),
            )
        } else {
            (scale, (0..m).map(|c| bias[c] + at(c)).collect())
        };
        let node = &self.pending[ni];
        let prefix = format!("{}::{}", node.name, if mul { "scaled" } else { "shifted" });
        let out = node.outputs[0].clone();
        let sname = self.add_f32_constant(&format!("{prefix}_bn_scale"), vec![m], new_scale);
        let bname = self.add_f32_constant(&format!("{prefix}_bn_bias"), vec![m], new_bias);
        let bn = &mut self.pending[bi];
        bn.inputs[1] = sname;
        bn.inputs[2] = bname;
        bn.outputs[0] = out;
        self.pending.remove(ni);
        true
    }

    /// Drops nodes none of whose outputs reaches a graph output.
    fn remove_dead(&mut self, outputs: &[String]) {
        let mut live: HashSet<String> = outputs.iter().cloned().collect();
        let mut keep = vec![false; self.pending.len()];
        // `pending` is in a topological order, so one backward sweep suffices.
        for (i, p) in self.pending.iter().enumerate().rev() {
            if p.outputs.iter().any(|o| live.contains(o)) {
                keep[i] = true;
                live.extend(p.inputs.iter().cloned());
            }
        }
        let mut k = 0;
        self.pending.retain(|_| {
            k += 1;
            keep[k - 1]
        });
    }
}

fn assemble(
    mut ld: Loader<'_>,
    graph: &pb::GraphProto,
    real_inputs: &[&pb::ValueInfoProto],
    outputs: &[String],
    options: &LoadOptions,
) -> Result<ExecutionGraph, ExecError> {
    let model = ld.model;
    ld.pending.sort_by_key(|p| p.file_index);
    let input_names: HashSet<&str> = real_inputs.iter().map(|i| i.name.as_str()).collect();
    let output_set: HashSet<&str> = outputs.iter().map(String::as_str).collect();

    let mut ids: HashMap<String, TensorId> = HashMap::new();
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut constants: Vec<Option<Arc<TensorData>>> = Vec::new();
    let mut intern = |name: &str| -> Result<TensorId, ExecError> {
        if let Some(&id) = ids.get(name) {
            return Ok(id);
        }
        let v = ld
            .values
            .get(name)
            .ok_or_else(|| ExecError::DanglingInput {
                model: model.to_owned(),
                node: "graph".into(),
                tensor: name.to_owned(),
            })?;
        let kind = if input_names.contains(name) {
            TensorKind::Input
        } else if v.konst.is_some() {
            TensorKind::Constant
        } else if output_set.contains(name) {
            TensorKind::Output
        } else {
            TensorKind::Activation
        };
        let byte_size = checked_bytes(&v.shape, v.dtype).ok_or_else(|| ExecError::Overflow {
            model: model.to_owned(),
            what: format!("tensor '{name}' of shape {:?}", v.shape),
        })?;
        let id = TensorId(
            u32::try_from(tensors.len()).map_err(|_| ExecError::Overflow {
                model: model.to_owned(),
                what: "tensor count".into(),
            })?,
        );
        tensors.push(TensorInfo {
            name: name.to_owned(),
            dtype: v.dtype,
            shape: v.shape.clone(),
            byte_size,
            kind,
        });
        constants.push(v.konst.clone());
        ids.insert(name.to_owned(), id);
        Ok(id)
    };
    let inputs: Vec<TensorId> = real_inputs
        .iter()
        .map(|i| intern(&i.name))
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::with_capacity(ld.pending.len());
    for p in &ld.pending {
        let ins = p
            .inputs
            .iter()
            .map(|n| intern(n))
            .collect::<Result<Vec<_>, _>>()?;
        let outs = p
            .outputs
            .iter()
            .map(|n| intern(n))
            .collect::<Result<Vec<_>, _>>()?;
        nodes.push(OperatorNode {
            name: p.name.clone(),
            op: p.op.clone(),
            inputs: ins,
            outputs: outs,
        });
    }
    let out_ids: Vec<TensorId> = outputs
        .iter()
        .map(|n| intern(n))
        .collect::<Result<_, _>>()?;

    // Graph outputs forwarded by a removed Identity carry the model's output name.
    for (decl, &id) in graph.output.iter().zip(&out_ids) {
        let t = &mut tensors[id.index()];
        if t.kind == TensorKind::Output && t.name != decl.name {
            t.name = decl.name.clone();
        }
        check_declared(model, decl, "graph output", t.dtype, &t.shape)?;
    }

    // Deterministic topological order of the final nodes: stable Kahn by NodeId.
    let n = nodes.len();
    let mut producer_of = vec![None; tensors.len()];
    for (i, node) in nodes.iter().enumerate() {
        for &t in &node.outputs {
            producer_of[t.index()] = Some(i);
        }
    }
    let mut indeg = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate() {
        for &t in &node.inputs {
            if let Some(p) = producer_of[t.index()] {
                indeg[i] += 1;
                succ[p].push(i);
            }
        }
    }
    let order = stable_kahn(&mut indeg, &succ);
    if order.len() != n {
        // Cannot happen after the file-level check; kept as a typed error, not a panic.
        return Err(ExecError::Cycle {
            model: model.to_owned(),
            nodes: Vec::new(),
        });
    }

    let (order, plan) = plan_memory(model, &nodes, &tensors, &out_ids, order, options)?;
    Ok(ExecutionGraph::from_parts(GraphParts {
        name: model.to_owned(),
        opset: ld.opset,
        tensors,
        constants,
        nodes,
        inputs,
        outputs: out_ids,
        order: order.into_iter().map(|i| NodeId(i as u32)).collect(),
        plan,
    }))
}

/// Checks an output's inferred type and shape against the model's declaration (where the
/// model declares fixed values).
fn check_declared(
    model: &str,
    decl: &pb::ValueInfoProto,
    what: &str,
    dtype: DType,
    shape: &[usize],
) -> Result<(), ExecError> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Ty;
    let Some(Ty::TensorType(tt)) = decl.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    let mismatch = |reason: String| ExecError::ShapeMismatch {
        model: model.to_owned(),
        node: format!("{what} {}", decl.name),
        reason,
    };
    if tt.elem_type != 0 && DType::from_onnx(tt.elem_type) != Some(dtype) {
        return Err(mismatch(format!(
            "declared type {} but inferred {}",
            tensor::onnx_dtype_name(tt.elem_type),
            dtype
        )));
    }
    if let Some(s) = &tt.shape {
        let fits = s.dim.len() == shape.len()
            && s.dim.iter().zip(shape).all(|(d, &x)| match &d.value {
                // A negative value is an exporter's "dynamic" marker, like a symbol.
                Some(Dim::DimValue(v)) => *v < 0 || *v == x as i64,
                _ => true,
            });
        if !fits {
            return Err(mismatch(format!(
                "declared shape {:?} but inferred {:?}",
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(Dim::DimValue(v)) => v.to_string(),
                        Some(Dim::DimParam(p)) => p.clone(),
                        None => "?".into(),
                    })
                    .collect::<Vec<_>>(),
                shape
            )));
        }
    }
    Ok(())
}

/// Plans every non-constant tensor over `order` (optionally improved by Layer 2's
/// memory-aware reordering). Returns the order actually used and its plan.
fn plan_memory(
    model: &str,
    nodes: &[OperatorNode],
    tensors: &[TensorInfo],
    outputs: &[TensorId],
    order: Vec<usize>,
    options: &LoadOptions,
) -> Result<(Vec<usize>, aegis_memory::AllocationPlan), ExecError> {
    let mem = |source| ExecError::Memory {
        model: model.to_owned(),
        source,
    };
    let mut step_of = vec![0usize; nodes.len()];
    for (s, &n) in order.iter().enumerate() {
        step_of[n] = s;
    }
    let mut usages: Vec<TensorUsage> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| TensorUsage {
            id: i,
            size_bytes: t.byte_size,
            producer: None,
            consumers: Vec::new(),
            is_graph_output: outputs.iter().any(|o| o.index() == i),
            is_constant: t.kind == TensorKind::Constant,
        })
        .collect();
    for (ni, node) in nodes.iter().enumerate() {
        for &t in &node.outputs {
            usages[t.index()].producer = Some(step_of[ni]);
        }
        for &t in &node.inputs {
            let c = &mut usages[t.index()].consumers;
            if !c.contains(&step_of[ni]) {
                c.push(step_of[ni]);
            }
        }
    }
    usages.retain(|u| !u.is_constant);
    let hints = share_hints(nodes, tensors);
    let planner = MemoryPlanner::new(options.alignment)
        .with_share_hints(hints)
        .with_nest_hints(nest_hints(nodes, tensors));
    if options.memory_aware_order {
        let r = plan_with_reordering(&planner, order.len(), &usages, &[]).map_err(mem)?;
        let new_order = r.order.iter().map(|&k| order[k]).collect();
        Ok((new_order, r.plan))
    } else {
        let lifetimes = LifetimeAnalyser::analyse(order.len(), &usages).map_err(mem)?;
        Ok((order, planner.plan(&lifetimes).map_err(mem)?))
    }
}

/// Concatenations done in place: each part of a Concat whose parts are contiguous runs of its
/// output may be stored at its place in the output, so its producer writes it there and the
/// Concat copies nothing. A part qualifies when an operator produces it (not a graph input,
/// output or constant), it appears once among the Concat's inputs and in no earlier hinted
/// Concat. Whether the plan applies the hints (alignment, a smaller plan without them) is
/// the planner's call; the kernels check the placement they are given.
fn nest_hints(nodes: &[OperatorNode], tensors: &[TensorInfo]) -> Vec<NestHint> {
    let mut produced = vec![false; tensors.len()];
    for node in nodes {
        for &t in &node.outputs {
            produced[t.index()] = true;
        }
    }
    let mut used = vec![false; tensors.len()];
    let mut hints = Vec::new();
    for node in nodes {
        let Some(&out) = node.outputs.first() else {
            continue;
        };
        let o = &tensors[out.index()];
        if !matches!(o.kind, TensorKind::Activation | TensorKind::Output) {
            continue;
        }
        let parts: Vec<&TensorInfo> = node.inputs.iter().map(|t| &tensors[t.index()]).collect();
        let Some(slots) = crate::graph::concat_slots(&node.op, &parts, o) else {
            continue;
        };
        for (k, (&t, &offset)) in node.inputs.iter().zip(&slots).enumerate() {
            let once = !node.inputs[..k].contains(&t) && !node.inputs[k + 1..].contains(&t);
            if tensors[t.index()].kind == TensorKind::Activation
                && produced[t.index()]
                && once
                && !used[t.index()]
                && t != out
            {
                used[t.index()] = true;
                hints.push(NestHint {
                    inner: t.index(),
                    outer: out.index(),
                    offset,
                });
            }
        }
    }
    hints
}

/// In-place candidates: an elementwise op's output may take the storage of a same-sized
/// activation input read only by that op (not graph inputs, outputs or constants); so may a
/// reshape's (Reshape, Flatten, Squeeze, Unsqueeze: the same bytes), which then costs nothing.
fn share_hints(nodes: &[OperatorNode], tensors: &[TensorInfo]) -> Vec<ShareHint> {
    let mut readers = vec![0usize; tensors.len()];
    for node in nodes {
        let mut seen: Vec<TensorId> = Vec::new();
        for &t in &node.inputs {
            if !seen.contains(&t) {
                readers[t.index()] += 1;
                seen.push(t);
            }
        }
    }
    // The Sigmoid producing each tensor, for SiLU pairs below.
    let mut sigmoid_of: Vec<Option<TensorId>> = vec![None; tensors.len()];
    for node in nodes {
        if let (Op::Sigmoid, [x], [s]) = (&node.op, &node.inputs[..], &node.outputs[..]) {
            sigmoid_of[s.index()] = Some(*x);
        }
    }
    // Whether `o` may be stored over `i` (both activations of one size and type).
    let same_storage = |i: TensorId, o: TensorId| {
        let (t, o) = (&tensors[i.index()], &tensors[o.index()]);
        t.kind == TensorKind::Activation
            && o.kind == TensorKind::Activation
            && t.byte_size == o.byte_size
            && t.dtype == o.dtype
    };
    let mut hints = Vec::new();
    for node in nodes {
        if !node.op.is_elementwise() && !node.op.is_reshape_only() {
            continue;
        }
        // Only where the kernel has an in-place form for the type (the binder checks the same).
        let in_place = |t: TensorId| node.op.in_place_on(tensors[t.index()].dtype);
        // SiLU, `Mul(x, Sigmoid(x))` with `x` read by just the two: the product over `x`
        // first (the planner takes the first hint that fits), so a conv producing `x` can
        // write the product in its epilogue (over the Sigmoid's output, the product could
        // sit on the conv's own input).
        if let (Op::Mul, [a, b], [out]) = (&node.op, &node.inputs[..], &node.outputs[..]) {
            let x = match (sigmoid_of[a.index()], sigmoid_of[b.index()]) {
                (_, Some(x)) if x == *a => Some(x),
                (Some(x), _) if x == *b => Some(x),
                _ => None,
            };
            if let Some(x) =
                x.filter(|x| readers[x.index()] == 2 && same_storage(*x, *out) && in_place(*x))
            {
                hints.push(ShareHint {
                    input: x.index(),
                    output: out.index(),
                });
            }
        }
        let Some(&out) = node.outputs.first() else {
            continue;
        };
        let mut hinted = false;
        for &inp in &node.inputs {
            if !hinted && same_storage(inp, out) && readers[inp.index()] == 1 && in_place(inp) {
                hints.push(ShareHint {
                    input: inp.index(),
                    output: out.index(),
                });
                hinted = true;
            }
        }
    }
    hints
}
