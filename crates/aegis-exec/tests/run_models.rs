//! End to end on the host backend: every shared model's output matches its reference
//! (onnxruntime's, from ../shared/models/*/output_0.npy, within the model's tolerances), is
//! bit-identical across runs and across 1, 2 and 4 streams, and allocates no device memory
//! per inference.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{ExecOptions, Executor, HostTensor, PreparedModel};
use aegis_memory::DeviceMemoryPool;
use common::Case;
use rstest::rstest;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn load_case(name: &str) -> Case {
    let dir = models_dir().join(name);
    common::load_case(&dir, |stem| {
        HostTensor::read_npy(&dir.join(format!("{stem}.npy")))
    })
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
#[case("light-inception_v2")]
#[case("light-densenet121")]
#[case("light-resnet50")]
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

/// lightrand-squeezenet prepared with the default options, and one stream to run it on.
fn squeezenet_on_one_stream() -> (Case, PreparedModel, Stream) {
    let case = load_case("lightrand-squeezenet");
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 30);
    let model =
        PreparedModel::prepare(Arc::clone(&case.graph), &pool, &ExecOptions::default()).unwrap();
    let s = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    (case, model, s)
}

/// Inputs are uploaded through host buffers the model reuses from one inference to the next:
/// every inference still sees its own input (a different input in between changes the
/// output, and the first input again gives its first output bit for bit), also when
/// inferences are enqueued back to back without waiting.
#[test]
fn reused_upload_buffers_carry_each_inferences_own_input() {
    let (case, model, s) = squeezenet_on_one_stream();
    let a = case.inputs.clone();
    let x = a[0].to_f32().unwrap();
    let half: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
    let b = vec![HostTensor::from_f32(a[0].shape.clone(), &half).unwrap()];
    let out_a = Executor::run(&model, &a, &[&s]).unwrap();
    let out_b = Executor::run(&model, &b, &[&s]).unwrap();
    assert_ne!(out_a, out_b, "a different input must change the output");
    assert_eq!(Executor::run(&model, &a, &[&s]).unwrap(), out_a);
    // Back to back: the second upload needs a second buffer while the first may still be
    // queued; the last inference's outputs are B's.
    let first = Executor::enqueue(&model, &a, &[&s]).unwrap();
    drop(first);
    let out = Executor::enqueue(&model, &b, &[&s])
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(out, out_b);
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let (_, model, s) = squeezenet_on_one_stream();
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
