//! Reader for `shared/models/lifetimes/*.json` (format: `shared/models/README.md`), shared by
//! the tests and the `plan_bench` example.
#![allow(dead_code)] // each includer uses a different part

use std::path::{Path, PathBuf};

use aegis_memory::{ShareHint, TensorUsage};

#[derive(Debug, serde::Deserialize)]
pub struct FileTensor {
    pub name: String,
    pub size: u64,
    pub producer: i64,
    pub consumers: Vec<usize>,
}

#[derive(Debug, serde::Deserialize)]
pub struct LifetimesFile {
    pub model: String,
    pub steps: usize,
    pub naive_bytes: u64,
    pub lower_bound_bytes: u64,
    pub tensors: Vec<FileTensor>,
}

impl LifetimesFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Tensors with ids in file order; a read at step `steps` marks a graph output.
    pub fn usages(&self) -> Vec<TensorUsage> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(id, t)| TensorUsage {
                id,
                size_bytes: t.size,
                producer: usize::try_from(t.producer).ok(),
                consumers: t
                    .consumers
                    .iter()
                    .copied()
                    .filter(|&c| c < self.steps)
                    .collect(),
                is_graph_output: t.consumers.contains(&self.steps),
                is_constant: false,
            })
            .collect()
    }
}

impl LifetimesFile {
    /// In-place hints for steps whose op type the tensor name reveals (the files carry no op
    /// types): an element-wise or view op's output may take the memory of a same-size input
    /// that dies at that step. Unknown names (`r12`, `467`) give no hint.
    pub fn inplace_hints(&self) -> Vec<ShareHint> {
        let mut hints = Vec::new();
        for (out, t) in self.tensors.iter().enumerate() {
            let Ok(step) = usize::try_from(t.producer) else {
                continue;
            };
            if !op_of(&t.name).is_some_and(|op| ELEMENTWISE.contains(&op.as_str())) {
                continue;
            }
            for (input, u) in self.tensors.iter().enumerate() {
                let dies_here = u.consumers.iter().max() == Some(&step);
                if u.consumers.contains(&step) && dies_here && u.size == t.size {
                    hints.push(ShareHint { input, output: out });
                }
            }
        }
        hints
    }
}

/// Op types (lower case, no underscores) whose output can overwrite a same-size input:
/// element-wise maths, inference-mode normalisation and dropout, and pure views.
const ELEMENTWISE: &[&str] = &[
    "relu",
    "clip",
    "hardswish",
    "hardsigmoid",
    "sigmoid",
    "tanh",
    "erf",
    "sqrt",
    "add",
    "sub",
    "mul",
    "div",
    "multiply",
    "elementwiseadd",
    "batchnorm",
    "batchnormalization",
    "dropout",
    "identity",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "leakyrelu",
    "scale",
];

/// The producing op's type as the exporters spell it into tensor names: torch
/// `/scope/Relu_2_output_0`, paddle2onnx `p2o.pd_op.hardswish.0.0`, `Add@3` / `Add.3`,
/// paddle `batch_norm_4.tmp_2`, `elementwise_add_1`.
pub fn op_of(name: &str) -> Option<String> {
    let raw = if let Some(head) = name.rsplit_once("_output_").map(|(h, _)| h) {
        head.rsplit('/').next().unwrap_or(head)
    } else if let Some(rest) = name.strip_prefix("p2o.pd_op.") {
        rest.split('.').next().unwrap_or(rest)
    } else if let Some((head, _)) = name.split_once('@') {
        head
    } else {
        name.split('.').next().unwrap_or(name)
    };
    let op = raw.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_');
    let op: String = op
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    (!op.is_empty()).then_some(op)
}

/// `<workspace>/../shared/models/lifetimes`.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/lifetimes")
}

/// Every `*.json` in `dir`, sorted by name.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
