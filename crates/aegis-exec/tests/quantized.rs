//! Quantized models against onnxruntime: one small CNN quantized by onnxruntime's own tool in
//! the forms real quantized models take (fixtures from `xtask/scripts/gen_quant_fixtures.py`):
//! QOperator with u8 activations, QOperator with i8 activations and per-channel weights, QDQ
//! with per-channel weights, and dynamic quantization (ConvInteger, MatMulInteger).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel};
use aegis_memory::DeviceMemoryPool;

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

/// Loads a case, runs it, and checks the output against onnxruntime's: exactly, since every
/// step of these pipelines is integer arithmetic or an f32 rounding the reference also does.
/// Returns the graph's operator histogram.
fn check(name: &str) -> std::collections::BTreeMap<&'static str, usize> {
    let dir = case_dir(name);
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 24);
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let g = Arc::new(
        ExecutionGraph::load(dir.join("model.onnx"), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    );
    let model = PreparedModel::prepare(g.clone(), &pool, &ExecOptions::default()).unwrap();
    let x = HostTensor::read_npy(&dir.join("input_0.npy")).unwrap();
    let want = HostTensor::read_npy(&dir.join("output_0.npy")).unwrap();
    let want = want.to_f32().unwrap();
    // Twice, with 1 and 2 streams: the same bits each time.
    let stream2 = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    for streams in [vec![&stream], vec![&stream, &stream2]] {
        let outs = Executor::run(&model, std::slice::from_ref(&x), &streams)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outs.len(), 1, "{name}");
        assert_eq!(outs[0].shape, [1, 10], "{name}");
        let got = outs[0].to_f32().unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name} element {i}: {a} vs onnxruntime {b}"
            );
        }
    }
    g.op_histogram()
}

#[test]
fn qoperator_u8_activations_match_onnxruntime() {
    let ops = check("qop_u8");
    assert_eq!(ops.get("QLinearConv"), Some(&3), "{ops:?}");
    assert_eq!(ops.get("QLinearMatMul"), Some(&1), "{ops:?}");
}

#[test]
fn qoperator_i8_per_channel_matches_onnxruntime() {
    let ops = check("qop_s8_per_channel");
    assert_eq!(ops.get("QLinearConv"), Some(&3), "{ops:?}");
}

#[test]
fn qdq_weights_fold_to_f32_and_match_onnxruntime() {
    let ops = check("qdq_per_channel");
    // The weights' DequantizeLinear folded at load: the convs run on f32 constants, and only
    // the activations' QuantizeLinear / DequantizeLinear pairs remain.
    assert_eq!(ops.get("Conv"), Some(&3), "{ops:?}");
    assert_eq!(
        ops.get("QuantizeLinear"),
        ops.get("DequantizeLinear"),
        "{ops:?}"
    );
}

#[test]
fn dynamic_quantization_matches_onnxruntime() {
    let ops = check("dynamic");
    assert_eq!(ops.get("ConvInteger"), Some(&3), "{ops:?}");
    assert_eq!(ops.get("MatMulInteger"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("DynamicQuantizeLinear"), Some(&4), "{ops:?}");
}
