//! End to end on the host backend: every shared model's output matches its reference
//! (onnxruntime's, from ../shared/models/*/output_0.npy, within the model's tolerances), is
//! bit-identical across runs and across 1, 2 and 4 streams, and allocates no device memory
//! per inference.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel};
use aegis_memory::DeviceMemoryPool;
use rstest::rstest;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

struct Case {
    graph: Arc<ExecutionGraph>,
    inputs: Vec<HostTensor>,
    expected: Vec<HostTensor>,
    rtol: f32,
    atol: f32,
}

fn load_case(name: &str) -> Case {
    let dir = models_dir().join(name);
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
    let model = if dir.join("model_static.onnx").exists() {
        "model_static.onnx"
    } else {
        "model.onnx"
    };
    let graph = Arc::new(ExecutionGraph::load(dir.join(model), &opts).unwrap());
    let n_in = meta["inputs"].as_array().unwrap().len();
    let n_out = meta["outputs"].as_array().unwrap().len();
    let inputs = (0..n_in)
        .map(|k| HostTensor::read_npy(&dir.join(format!("input_{k}.npy"))).unwrap())
        .collect();
    let expected = (0..n_out)
        .map(|k| HostTensor::read_npy(&dir.join(format!("output_{k}.npy"))).unwrap())
        .collect();
    Case {
        graph,
        inputs,
        expected,
        rtol: meta["rtol"].as_f64().unwrap_or(1e-3) as f32,
        atol: meta["atol"].as_f64().unwrap_or(1e-4) as f32,
    }
}

fn run(case: &Case, streams: usize) -> (Vec<HostTensor>, u64) {
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 4 << 30);
    let opts = ExecOptions {
        streams,
        threads: 2,
    };
    let model = PreparedModel::prepare(Arc::clone(&case.graph), &pool, &opts).unwrap();
    let ss: Vec<Stream> = (0..streams)
        .map(|_| Stream::new(&device, StreamPriority::NORMAL).unwrap())
        .collect();
    let refs: Vec<&Stream> = ss.iter().collect();
    let before = pool.stats().total_allocations;
    let out = Executor::run(&model, &case.inputs, &refs).unwrap();
    let again = Executor::run(&model, &case.inputs, &refs).unwrap();
    assert_eq!(out, again, "not bit-identical run to run");
    let allocs = pool.stats().total_allocations - before;
    (out, allocs)
}

fn assert_close(name: &str, got: &[HostTensor], want: &[HostTensor], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.shape, w.shape, "{name}: shape");
        let (g, w) = (g.to_f32().unwrap(), w.to_f32().unwrap());
        let mut worst = 0.0f32;
        for (a, b) in g.iter().zip(&w) {
            let err = (a - b).abs() - (atol + rtol * b.abs());
            worst = worst.max(err);
        }
        assert!(worst <= 0.0, "{name}: outside tolerance by {worst}");
    }
}

#[rstest]
#[case("lightrand-squeezenet")]
#[case("lightrand-shufflenet")]
#[case("tv-squeezenet1_1")]
#[case("tv-mobilenet_v2")]
#[case("tv-transformer_encoder_2l")]
#[case("ppocr-mobile-v2-cls")]
#[case("light-squeezenet")]
#[case("light-shufflenet")]
#[case("light-inception_v1")]
#[case("light-bvlc_alexnet")]
fn matches_reference_and_is_deterministic_across_streams(#[case] name: &str) {
    let case = load_case(name);
    let (one, allocs) = run(&case, 1);
    assert_eq!(allocs, 0, "device memory allocated per inference");
    assert_close(name, &one, &case.expected, case.rtol, case.atol);
    for streams in [2, 4] {
        let (multi, _) = run(&case, streams);
        assert_eq!(multi, one, "{name}: {streams} streams differ from 1");
    }
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let case = load_case("lightrand-squeezenet");
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 30);
    let model =
        PreparedModel::prepare(Arc::clone(&case.graph), &pool, &ExecOptions::default()).unwrap();
    let s = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let bad = HostTensor::from_f32(vec![1, 3, 2, 2], &[0.0; 12]).unwrap();
    let err = Executor::run(&model, &[bad], &[&s]).unwrap_err();
    assert!(
        matches!(err, aegis_exec::ExecError::InputMismatch { .. }),
        "{err}"
    );
    assert!(Executor::run(&model, &[], &[&s]).is_err());
}

#[test]
fn budget_too_small_fails_to_prepare_with_numbers() {
    let case = load_case("lightrand-squeezenet");
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 16);
    let err = PreparedModel::prepare(Arc::clone(&case.graph), &pool, &ExecOptions::default())
        .unwrap_err();
    assert_eq!(
        aegis_cuda::Categorized::category(&err),
        aegis_cuda::ErrorCategory::Transient,
        "{err}"
    );
}
