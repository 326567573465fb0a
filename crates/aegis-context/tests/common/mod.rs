//! Shared helpers: real small models from /work/shared/models.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use aegis_exec::{ExecutionGraph, HostTensor, LoadOptions};

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

pub fn model_path(name: &str) -> PathBuf {
    models_dir().join(name).join("model.onnx")
}

/// The three small models the tests use, with the load options they need.
pub fn load(name: &str) -> Arc<ExecutionGraph> {
    let mut opts = LoadOptions::default();
    if name == "ppocr-mobile-v2-cls" {
        opts = opts.with_input_shape("x", vec![1, 3, 48, 192]);
    }
    Arc::new(ExecutionGraph::load(model_path(name), &opts).expect("model loads"))
}

pub fn reference_input(name: &str) -> HostTensor {
    HostTensor::read_npy(&models_dir().join(name).join("input_0.npy")).expect("input")
}

pub fn reference_output(name: &str) -> HostTensor {
    HostTensor::read_npy(&models_dir().join(name).join("output_0.npy")).expect("output")
}

/// Max |a-b| over two f32 tensors of one shape.
pub fn max_abs_diff(a: &HostTensor, b: &HostTensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.to_f32().unwrap(), b.to_f32().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub const SQUEEZE: &str = "lightrand-squeezenet";
pub const TV_SQUEEZE: &str = "tv-squeezenet1_1";
pub const PPOCR: &str = "ppocr-mobile-v2-cls";
