//! Blocks of architectures the shared models do not cover (ConvNeXt, MobileNetV3,
//! EfficientNet, ResNeXt, Inception-v3, ViT, a GPT-style decoder, YOLO, a U-Net decoder, Swin
//! windows) against onnxruntime, with seeded random weights (fixtures from
//! `xtask/scripts/gen_arch_fixtures.py`). They reach what only op-level tests cover otherwise:
//! 7x7 and 5x5 depthwise convs, grouped 3x3 convs, Gelu (the operator and the five nodes an
//! exporter writes, which run fused), SiLU, 5x5 pooling, transposed convs, window attention,
//! causal masks, and the kernel paths whose choice depends on shapes.
//!
//! Each block runs at 1 and 2 threads, and on 2 streams; outputs must match onnxruntime's
//! within `1e-4 + 1e-3 |want|`, and the runs must agree bit for bit.

use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{ExecOptions, ExecutionGraph, Executor, LoadOptions, PreparedModel};
use aegis_memory::DeviceMemoryPool;

mod fixture_dirs;
use fixture_dirs::{fixtures, numbered};

#[test]
fn architecture_blocks_match_onnxruntime_at_any_thread_and_stream_count() {
    let cases = fixtures("arch");
    assert_eq!(cases.len(), 10, "{cases:?}");
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 28);
    let streams: Vec<Stream> = (0..2)
        .map(|_| Stream::new(&device, StreamPriority::NORMAL).unwrap())
        .collect();
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let g = Arc::new(
            ExecutionGraph::load(dir.join("model.onnx"), &LoadOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
        let inputs = numbered(&dir, "input");
        let want = numbered(&dir, "output");
        let mut first: Option<Vec<Vec<f32>>> = None;
        for (threads, n_streams) in [(1, 1), (2, 1), (2, 2)] {
            let opts = ExecOptions {
                threads,
                streams: n_streams,
            };
            let model = PreparedModel::prepare(Arc::clone(&g), &pool, &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let refs: Vec<&Stream> = streams.iter().take(n_streams).collect();
            let outs =
                Executor::run(&model, &inputs, &refs).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(outs.len(), want.len(), "{name}");
            let mut got = Vec::new();
            for (k, (o, w)) in outs.iter().zip(&want).enumerate() {
                assert_eq!(o.shape, w.shape, "{name} output {k}");
                let (o, w) = (o.to_f32().unwrap(), w.to_f32().unwrap());
                for (i, (a, b)) in o.iter().zip(&w).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 + 1e-3 * b.abs(),
                        "{name} output {k} element {i}: {a} vs onnxruntime {b} \
                         ({threads} threads, {n_streams} streams)"
                    );
                }
                got.push(o);
            }
            match &first {
                None => first = Some(got),
                Some(f) => assert!(
                    f.iter()
                        .flatten()
                        .zip(got.iter().flatten())
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}: {threads} threads / {n_streams} streams differ from 1 thread"
                ),
            }
        }
    }
}
