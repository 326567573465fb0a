//! Shared by the model test binaries (`run_models`, `cuda_models`): loading one shared model
//! folder (`meta.json`, its model file and reference tensors) as a [`Case`].

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use aegis_exec::{ExecutionGraph, HostTensor, LoadOptions};

/// One shared model with its inputs, reference outputs and tolerances.
pub struct Case {
    pub graph: Arc<ExecutionGraph>,
    pub inputs: Vec<HostTensor>,
    pub expected: Vec<HostTensor>,
    pub rtol: f32,
    pub atol: f32,
}

/// Loads the model in `dir` with `meta.json`'s input shapes (`model_static.onnx` when there is
/// one) and its tolerances; `tensor` reads a reference tensor by stem (`input_0`, `output_0`),
/// since the host and CUDA tests take them from different files.
pub fn load_case<E: Debug>(dir: &Path, tensor: impl Fn(&str) -> Result<HostTensor, E>) -> Case {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let mut opts = LoadOptions::default();
    for i in meta["inputs"].as_array().unwrap() {
        let shape: Vec<usize> = i["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap_or(1) as usize)
            .collect();
        opts = opts.with_input_shape(i["name"].as_str().unwrap(), shape);
    }
    let file = if dir.join("model_static.onnx").exists() {
        "model_static.onnx"
    } else {
        "model.onnx"
    };
    let graph = Arc::new(ExecutionGraph::load(dir.join(file), &opts).unwrap());
    let n_in = meta["inputs"].as_array().unwrap().len();
    let n_out = meta["outputs"].as_array().unwrap().len();
    let inputs = (0..n_in)
        .map(|k| tensor(&format!("input_{k}")).unwrap())
        .collect();
    let expected = (0..n_out)
        .map(|k| tensor(&format!("output_{k}")).unwrap())
        .collect();
    Case {
        graph,
        inputs,
        expected,
        rtol: meta["rtol"].as_f64().unwrap_or(1e-3) as f32,
        atol: meta["atol"].as_f64().unwrap_or(1e-4) as f32,
    }
}
