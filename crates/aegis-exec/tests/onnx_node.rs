//! ONNX backend node-test conformance: every test case shipped in the `onnx` Python package
//! (`onnx/backend/test/data/node/<case>/{model.onnx, test_data_set_0/*.pb}`) whose operators
//! are all in AegisRT's supported set is loaded, prepared on the host device, run, and
//! compared with ONNX's reference outputs.
//!
//! Conformance is data (see STYLE.md §9): a case that fails is either listed in
//! `onnx_node_known_failures.txt` with its reason, or the test fails. A listed case that
//! passes also fails the test (the list must shrink as fixes land), and so does a listed name
//! that is not a selected case, and any panic (a panic is a bug, never a known failure).
//!
//! The data comes from the pinned `onnx` package (opsets up to 28): `.ci/run` installs it
//! into `target/onnx-pkg`, writes its node cases (with onnx's reference outputs) into
//! `target/onnx-node/node` with `xtask/scripts/gen_onnx_node.py`, and exports
//! `AEGIS_ONNX_NODE_DIR`. Without them this test fails and says how to make them.
//!
//! Shape inputs: the backend tests feed shape-like operands (Reshape's `shape`, Slice's
//! `starts`, Pad's `pads` ...) as graph inputs, while AegisRT needs them known at load (static
//! shapes; in exported models they are initializers or folded `Shape` arithmetic). When the
//! loader says a node input must be known at load and that input is a graph input, the
//! harness freezes it: the input's test value becomes an initializer and the case runs again.
//! Such passes are counted separately in the summary.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aegis_cuda::{CudaError, Device, Stream, StreamPriority};
use aegis_exec::{
    DType, ExecError, ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel,
};
use aegis_memory::DeviceMemoryPool;
use prost::Message;
use tract_onnx::pb::{self, ModelProto, TensorProto};
use tract_onnx::tract_hir::prelude::Framework;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-4;
const PIN: &str = "onnx==1.23.2";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The node-test directory; panics (fails the test) with install instructions when absent.
fn node_dir() -> PathBuf {
    let dir = match std::env::var_os("AEGIS_ONNX_NODE_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target/onnx-node/node"),
    };
    assert!(
        dir.join("test_add/model.onnx").is_file(),
        "ONNX backend node tests not found at {}.\nWrite them (data only, not committed) from \
         the workspace root with:\n  python3 -m pip install --target target/onnx-pkg {PIN}\n  \
         PYTHONPATH=target/onnx-pkg python3 xtask/scripts/gen_onnx_node.py target/onnx-node\nor \
         point AEGIS_ONNX_NODE_DIR at a folder of node cases (.ci/run does both).",
        dir.display()
    );
    dir
}

/// `test_name -> reason` from the manifest; malformed lines fail the test.
fn known_failures() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_node_known_failures.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("manifest line {}: expected `test_name: reason`", n + 1));
        let (name, reason) = (name.trim(), reason.trim());
        assert!(
            !name.is_empty() && !reason.is_empty(),
            "manifest line {}: empty name or reason",
            n + 1
        );
        assert!(
            out.insert(name.to_owned(), reason.to_owned()).is_none(),
            "manifest lists {name} twice"
        );
    }
    out
}

/// Why a case failed.
#[derive(Debug)]
struct Failure {
    stage: &'static str,
    reason: String,
    panicked: bool,
}

impl Failure {
    fn new(stage: &'static str, reason: impl Into<String>) -> Self {
        Self {
            stage,
            reason: reason.into(),
            panicked: false,
        }
    }

    fn exec(stage: &'static str, e: &ExecError) -> Self {
        let panicked = matches!(
            e,
            ExecError::Device {
                source: CudaError::WorkPanicked { .. },
                ..
            }
        );
        Self {
            stage,
            reason: e.to_string(),
            panicked,
        }
    }
}

/// A passing case and the graph inputs the harness froze into initializers.
struct Pass {
    frozen: Vec<String>,
}

struct Case {
    name: String,
    dir: PathBuf,
    proto: ModelProto,
    ops: BTreeSet<String>,
}

fn read_tensor_proto(path: &Path) -> Result<TensorProto, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::new("data", e.to_string()))?;
    TensorProto::decode(bytes.as_slice())
        .map_err(|e| Failure::new("data", format!("{}: {e}", path.display())))
}

fn data_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|k| dir.join(format!("test_data_set_0/{prefix}_{k}.pb")))
        .take_while(|p| p.is_file())
        .collect()
}

/// Graph inputs that are not initializers, in file order.
fn real_inputs(g: &pb::GraphProto) -> Vec<&pb::ValueInfoProto> {
    let inits: BTreeSet<&str> = g.initializer.iter().map(|i| i.name.as_str()).collect();
    g.input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect()
}

fn has_open_dims(vi: &pb::ValueInfoProto) -> bool {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Ty;
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Ty::TensorType(tt)) => match &tt.shape {
            None => true,
            Some(s) => s
                .dim
                .iter()
                .any(|d| !matches!(d.value, Some(Dim::DimValue(v)) if v >= 0)),
        },
        _ => false,
    }
}

/// The graph inputs a "must be known at load" error (or the prepare step's "weights must be a
/// float constant") asks for, if the error is one. The named operand is a graph input, or is
/// computed from integer or scalar graph inputs (a shape built by `Shape`/`Concat` arithmetic, an
/// expanded function's operands, a node inside an `If` branch, named `If#3/then/...`): those
/// are frozen then.
fn inputs_to_freeze(proto: &ModelProto, e: &ExecError) -> Vec<String> {
    let ExecError::InvalidNode { node, reason, .. } = e else {
        return Vec::new();
    };
    let weights = reason.contains("weights must be a float constant");
    if !reason.contains("known at load") && !weights {
        return Vec::new();
    }
    let Some(g) = &proto.graph else {
        return Vec::new();
    };
    // The loader names a node by its name, or `op_type#index` when it has none; a node of an
    // inlined `If` branch by the `If`'s name, the branch and its own name.
    let top = node.split('/').next().unwrap_or(node);
    let found = g.node.iter().enumerate().find(|(i, n)| {
        if n.name.is_empty() {
            format!("{}#{i}", n.op_type) == top
        } else {
            n.name == top
        }
    });
    let Some((_, n)) = found else {
        return Vec::new();
    };
    // "input K must be ..." (after the op's name when a kernel reports it).
    let index = reason
        .split("input ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|k| k.parse::<usize>().ok());
    let branch_reads = all_reads(n);
    let candidates: Vec<&String> = match index {
        _ if top != node => n.input.iter().chain(&branch_reads).collect(),
        Some(k) => n.input.get(k).into_iter().collect(),
        // Conv's weights and bias are inputs 1 and 2.
        None if weights => n.input.iter().skip(1).collect(),
        None => n.input.iter().collect(),
    };
    let inputs = real_inputs(g);
    let graph_inputs: BTreeSet<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let direct: Vec<String> = candidates
        .iter()
        .filter(|c| graph_inputs.contains(**c))
        .map(|c| (*c).clone())
        .collect();
    if !direct.is_empty() && top == node {
        return direct;
    }
    // Computed operands: the integer and scalar graph inputs they are computed from.
    let shape_like: BTreeSet<String> = inputs
        .iter()
        .filter(|vi| is_shape_like_input(vi))
        .map(|vi| vi.name.clone())
        .collect();
    let mut found = BTreeSet::new();
    let mut todo: Vec<String> = candidates.into_iter().cloned().collect();
    let mut seen = BTreeSet::new();
    while let Some(t) = todo.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        if shape_like.contains(&t) {
            found.insert(t.clone());
        }
        if let Some(p) = g.node.iter().find(|p| p.output.contains(&t)) {
            todo.extend(p.input.iter().chain(&all_reads(p)).cloned());
        }
    }
    found.into_iter().collect()
}

/// Every name `n`'s subgraphs read (their own values too: the caller only follows names the
/// top-level graph produces).
fn all_reads(n: &pb::NodeProto) -> Vec<String> {
    let mut out = Vec::new();
    for a in &n.attribute {
        for g in a.g.iter().chain(&a.graphs) {
            for inner in &g.node {
                out.extend(inner.input.iter().cloned());
                out.extend(all_reads(inner));
            }
        }
    }
    out
}

/// An integer tensor or a scalar: what shape arithmetic and trip counts are computed from
/// (`Range`'s float `start`, `limit` and `delta` in its expansion).
fn is_shape_like_input(vi: &pb::ValueInfoProto) -> bool {
    use pb::type_proto::Value as Ty;
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Ty::TensorType(tt)) => {
            matches!(tt.elem_type, 6 | 7) || tt.shape.as_ref().is_some_and(|s| s.dim.is_empty())
        }
        _ => false,
    }
}

/// Loads and prepares the case, freezing graph inputs the loader or kernels need constant.
fn load(case: &Case, pool: &DeviceMemoryPool) -> Result<(PreparedModel, Vec<String>), Failure> {
    let mut proto = case.proto.clone();
    let mut frozen: Vec<String> = Vec::new();
    let exec = ExecOptions {
        streams: 1,
        threads: 1,
    };
    loop {
        let g = proto
            .graph
            .as_ref()
            .ok_or_else(|| Failure::new("load", "no graph"))?;
        let files = data_files(&case.dir, "input");
        let inputs = real_inputs(g);
        let mut opts = LoadOptions::default();
        for vi in &inputs {
            if !has_open_dims(vi) {
                continue;
            }
            let k = input_file_index(case, &vi.name)?;
            let path = files
                .get(k)
                .ok_or_else(|| Failure::new("data", format!("missing input_{k}.pb")))?;
            let t = read_tensor_proto(path)?;
            let shape = t
                .dims
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| Failure::new("data", "negative dimension"))?;
            opts = opts.with_input_shape(vi.name.clone(), shape);
        }
        let loaded = if frozen.is_empty() {
            ExecutionGraph::load(case.dir.join("model.onnx"), &opts)
        } else {
            ExecutionGraph::from_bytes(&proto.encode_to_vec(), &case.name, &opts)
        };
        let (stage, e) = match loaded {
            Ok(graph) => match PreparedModel::prepare(Arc::new(graph), pool, &exec) {
                Ok(model) => return Ok((model, frozen)),
                Err(e) => ("prepare", e),
            },
            Err(e) => ("load", e),
        };
        let more = inputs_to_freeze(&proto, &e);
        if more.is_empty() || more.iter().any(|m| frozen.contains(m)) {
            return Err(Failure::exec(stage, &e));
        }
        for name in more {
            freeze(case, &mut proto, &name)?;
            frozen.push(name);
        }
    }
}

/// The index `k` of `input_k.pb` holding graph input `name` (test data follows the original
/// model's input order).
fn input_file_index(case: &Case, name: &str) -> Result<usize, Failure> {
    let g = case
        .proto
        .graph
        .as_ref()
        .ok_or_else(|| Failure::new("load", "no graph"))?;
    real_inputs(g)
        .iter()
        .position(|i| i.name == name)
        .ok_or_else(|| Failure::new("data", format!("no test data for input {name}")))
}

/// Turns graph input `name` into an initializer holding its test value.
fn freeze(case: &Case, proto: &mut ModelProto, name: &str) -> Result<(), Failure> {
    let k = input_file_index(case, name)?;
    let files = data_files(&case.dir, "input");
    let path = files
        .get(k)
        .ok_or_else(|| Failure::new("data", format!("missing input_{k}.pb")))?;
    let mut t = read_tensor_proto(path)?;
    t.name = name.to_owned();
    let g = proto
        .graph
        .as_mut()
        .ok_or_else(|| Failure::new("load", "no graph"))?;
    g.input.retain(|i| i.name != name);
    g.initializer.push(t);
    Ok(())
}

fn run_case(case: &Case) -> Result<Pass, Failure> {
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 30);
    let (model, frozen) = load(case, &pool)?;

    let files = data_files(&case.dir, "input");
    let mut inputs = Vec::new();
    for name in model.input_names() {
        let k = input_file_index(case, &name)?;
        let path = files
            .get(k)
            .ok_or_else(|| Failure::new("data", format!("missing input_{k}.pb")))?;
        let want = model
            .graph()
            .tensor_by_name(&name)
            .map_or(DType::F32, |t| model.graph().tensor(t).dtype);
        inputs.push(read_data(path, want)?);
    }
    let stream = Stream::new(&device, StreamPriority::NORMAL)
        .map_err(|e| Failure::new("run", e.to_string()))?;
    let got = Executor::run(&model, &inputs, &[&stream]).map_err(|e| Failure::exec("run", &e))?;

    let want_files = data_files(&case.dir, "output");
    if got.len() != want_files.len() {
        return Err(Failure::new(
            "compare",
            format!("{} outputs, reference has {}", got.len(), want_files.len()),
        ));
    }
    for (k, (g, path)) in got.iter().zip(&want_files).enumerate() {
        let w = read_data(path, g.dtype)?;
        compare(g, &w).map_err(|r| Failure::new("compare", format!("output {k}: {r}")))?;
    }
    Ok(Pass { frozen })
}

/// A test data file, read as the model's tensor of element type `want` takes it. The onnx
/// package writes bfloat16 data (which numpy lacks) as UINT16 tensors of the same bit
/// patterns: where the model's tensor is bf16, those are read as bf16.
fn read_data(path: &Path, want: DType) -> Result<HostTensor, Failure> {
    let mut t = HostTensor::read_pb(path).map_err(|e| Failure::exec("data", &e))?;
    if t.dtype == DType::U16 && want == DType::BF16 {
        t.dtype = DType::BF16;
    }
    Ok(t)
}

fn values(t: &HostTensor) -> Vec<f64> {
    t.to_f64().unwrap_or_default()
}

/// Shape and dtype equal; floats within `ATOL + RTOL |want|` (NaN equals NaN, infinities
/// must match exactly); integers and bools exact.
fn compare(got: &HostTensor, want: &HostTensor) -> Result<(), String> {
    if got.dtype != want.dtype {
        return Err(format!("dtype {} != reference {}", got.dtype, want.dtype));
    }
    if got.shape != want.shape {
        return Err(format!(
            "shape {:?} != reference {:?}",
            got.shape, want.shape
        ));
    }
    if got.data.len() != want.data.len() {
        return Err(format!(
            "{} bytes != reference {}",
            got.data.len(),
            want.data.len()
        ));
    }
    let exact = !matches!(
        got.dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::F64
    );
    let (g, w) = (values(got), values(want));
    let mut worst: Option<(usize, f64, f64, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = if exact {
            // Narrow floats (exact: one rounding, to the reference's code) have NaNs too.
            a == b || (a.is_nan() && b.is_nan())
        } else if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= ATOL + RTOL * b.abs()
        };
        if !ok {
            let err = if (a - b).is_nan() {
                f64::INFINITY
            } else {
                (a - b).abs()
            };
            if worst.is_none_or(|(_, e, _, _)| err > e) {
                worst = Some((i, err, a, b));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, err, a, b)) => Err(format!(
            "mismatch: max abs error {err:.3e} at element {i} (got {a}, want {b})"
        )),
    }
}

fn collect_cases(dir: &Path) -> (Vec<Case>, usize) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let total = names.len();
    let onnx = tract_onnx::onnx();
    // The loader's own list, so a newly supported op's node tests are selected at once.
    let supported: BTreeSet<&str> = aegis_exec::loader::supported_ops()
        .iter()
        .map(|&(op, _)| op)
        .collect();
    let mut cases = Vec::new();
    for name in names {
        let case_dir = dir.join(&name);
        let proto = onnx
            .proto_model_for_path(case_dir.join("model.onnx"))
            .unwrap_or_else(|e| panic!("{name}: tract cannot parse model.onnx: {e:#}"));
        let Some(g) = &proto.graph else { continue };
        let default_domain = g
            .node
            .iter()
            .all(|n| n.domain.is_empty() || n.domain == "ai.onnx");
        let ops: BTreeSet<String> = g.node.iter().map(|n| n.op_type.clone()).collect();
        if default_domain && !ops.is_empty() && ops.iter().all(|o| supported.contains(o.as_str())) {
            cases.push(Case {
                name,
                dir: case_dir,
                proto,
                ops,
            });
        }
    }
    (cases, total)
}

#[derive(Default)]
struct OpStats {
    selected: usize,
    passed: usize,
}

#[test]
fn onnx_backend_node_tests() {
    let start = Instant::now();
    let dir = node_dir();
    let manifest = known_failures();
    let (cases, total) = collect_cases(&dir);

    let mut per_op: BTreeMap<String, OpStats> = BTreeMap::new();
    let mut passed = 0usize;
    let mut passed_frozen = 0usize;
    let mut known = 0usize;
    let mut problems: Vec<String> = Vec::new();
    for case in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(case))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(Failure {
                stage: "panic",
                reason: msg,
                panicked: true,
            })
        });
        let ok = outcome.is_ok();
        for op in &case.ops {
            let s = per_op.entry(op.clone()).or_default();
            s.selected += 1;
            s.passed += usize::from(ok);
        }
        let listed = manifest.get(&case.name);
        match (outcome, listed) {
            (Ok(p), None) => {
                passed += 1;
                if !p.frozen.is_empty() {
                    passed_frozen += 1;
                    println!("pass  {} (froze {})", case.name, p.frozen.join(", "));
                }
            }
            (Ok(_), Some(_)) => {
                passed += 1;
                problems.push(format!(
                    "{}: passes now; remove it from onnx_node_known_failures.txt",
                    case.name
                ));
            }
            (Err(mut f), listed) => {
                // The model path is the case's; keep reasons short and machine-independent.
                f.reason = f.reason.replace(
                    &format!("model {}: ", case.dir.join("model.onnx").display()),
                    "",
                );
                f.reason = f.reason.replace(&format!("model {}: ", case.name), "");
                println!("FAIL  {} [{}] {}", case.name, f.stage, f.reason);
                if f.panicked {
                    problems.push(format!(
                        "{}: PANICKED ({}): {} — a panic is a bug, never a known failure",
                        case.name, f.stage, f.reason
                    ));
                } else if listed.is_some() {
                    known += 1;
                } else {
                    problems.push(format!(
                        "{}: unexpected failure [{}] {}",
                        case.name, f.stage, f.reason
                    ));
                }
            }
        }
    }
    let selected_names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for name in manifest.keys() {
        if !selected_names.contains(name.as_str()) {
            problems.push(format!(
                "{name}: listed in onnx_node_known_failures.txt but not a selected case"
            ));
        }
    }

    println!("\nper-op (a case counts for every op its model uses):");
    println!("{:<20} {:>8} {:>8}", "op", "passed", "cases");
    for (op, s) in &per_op {
        println!("{op:<20} {:>8} {:>8}", s.passed, s.selected);
    }
    let selected = cases.len();
    let rate = if selected == 0 {
        0.0
    } else {
        100.0 * passed as f64 / selected as f64
    };
    println!(
        "\nONNX node tests: {total} in {}, {selected} selected (all ops supported), {passed} \
         passed ({passed_frozen} with shape inputs frozen), {known} known failures, pass rate \
         {rate:.1}% ({:.1} s)",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    assert!(selected > 0, "no node test uses only supported ops");
    assert!(
        problems.is_empty(),
        "{} conformance problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Every model of the suite, selected or not (unsupported ops, dtypes, sequences, optional
/// types, functions ...), loads or is rejected with a typed error; none panics.
#[test]
fn every_node_test_model_loads_or_is_a_typed_error() {
    let dir = node_dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let (mut loaded, mut rejected) = (0usize, 0usize);
    let mut panics = Vec::new();
    for path in &names {
        match catch_unwind(|| ExecutionGraph::load(path, &LoadOptions::default()).is_ok()) {
            Ok(true) => loaded += 1,
            Ok(false) => rejected += 1,
            Err(_) => panics.push(path.display().to_string()),
        }
    }
    println!(
        "{} node-test models: {loaded} loaded, {rejected} typed errors, {} panics",
        names.len(),
        panics.len()
    );
    assert!(!names.is_empty());
    assert!(
        panics.is_empty(),
        "the loader panicked on:\n{}",
        panics.join("\n")
    );
}
