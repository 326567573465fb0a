//! Opsets 1 to 6: early operator versions load as their opset-7 forms (`loader::legacy`).
//!
//! Two kinds of evidence: the shared opset-9 models rewritten down to opsets 6, 3 and 1 the
//! way ONNX's version converter writes them (test-mode flags, `consumed_inputs`, `Gemm`'s
//! `broadcast`, `Reshape`'s shape attribute) give the opset-9 model's output bit for bit;
//! and small graphs check each translated attribute against values worked out by hand.

#[path = "malformed/builder.rs"]
mod builder;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{
    ExecError, ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel,
};
use aegis_memory::DeviceMemoryPool;
use builder::*;
use prost::Message;
use tract_onnx::pb;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn run(g: ExecutionGraph, inputs: &[HostTensor]) -> Vec<HostTensor> {
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 30);
    let model = PreparedModel::prepare(Arc::new(g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    Executor::run(&model, inputs, &[&stream]).unwrap()
}

fn load(bytes: &[u8]) -> Result<ExecutionGraph, ExecError> {
    ExecutionGraph::from_bytes(bytes, "legacy", &LoadOptions::default())
}

/// `m` (opset 9) as ONNX's version converter writes it at `opset`: what changed between
/// these versions for the operators of the two shared lightrand models.
fn downgrade(mut m: pb::ModelProto, opset: i64) -> pb::ModelProto {
    m.opset_import[0].version = opset;
    let g = m.graph.as_mut().unwrap();
    let mut shape_inits = Vec::new();
    for n in &mut g.node {
        match n.op_type.as_str() {
            "BatchNormalization" => {
                n.attribute.push(attr_i("is_test", 1));
                if opset < 6 {
                    n.attribute
                        .push(attr_ints("consumed_inputs", &[0, 0, 0, 1, 1]));
                }
            }
            "Dropout" => n.attribute.push(attr_i("is_test", 1)),
            "Gemm" => n.attribute.push(attr_i("broadcast", 1)),
            "Relu" if opset < 6 => n.attribute.push(attr_ints("consumed_inputs", &[0])),
            "Reshape" if opset < 5 => {
                let s = n.input.pop().unwrap();
                let t = g.initializer.iter().find(|t| t.name == s).unwrap();
                let dims: Vec<i64> = if t.int64_data.is_empty() {
                    t.raw_data
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect()
                } else {
                    t.int64_data.clone()
                };
                n.attribute.push(attr_ints("shape", &dims));
                shape_inits.push(s);
            }
            _ => {}
        }
    }
    g.initializer.retain(|t| !shape_inits.contains(&t.name));
    m
}

/// The shared models at opsets 6, 3 and 1: the opset-9 output, bit for bit (the same graph
/// once the nodes are read).
#[test]
fn shared_models_rewritten_to_opsets_6_3_and_1_give_the_same_bits() {
    for name in ["lightrand-squeezenet", "lightrand-shufflenet"] {
        let dir = models_dir().join(name);
        let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
        let input = HostTensor::read_npy(&dir.join("input_0.npy")).unwrap();
        let want = run(load(&bytes).unwrap(), std::slice::from_ref(&input));
        let proto = pb::ModelProto::decode(bytes.as_slice()).unwrap();
        for opset in [6, 3, 1] {
            let old = downgrade(proto.clone(), opset).encode_to_vec();
            let g = load(&old).unwrap_or_else(|e| panic!("{name} at opset {opset}: {e}"));
            let got = run(g, std::slice::from_ref(&input));
            assert_eq!(got, want, "{name} at opset {opset}");
        }
    }
}

fn f32s(t: &HostTensor) -> Vec<f32> {
    t.to_f32().unwrap()
}

/// `A op B` with `broadcast = 1`: `B` lines up with `A` from `axis` (or as a suffix), a
/// constant or a graph input alike; `consumed_inputs` is ignored.
#[test]
fn arithmetic_broadcast_follows_axis_before_opset_7() {
    let a: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..3 * 4).map(|i| 1000.0 * (i + 1) as f32).collect();
    let want: Vec<f32> = (0..a.len())
        .map(|i| {
            let (c, h) = ((i / 20) % 3, (i / 5) % 4);
            a[i] + b[c * 4 + h]
        })
        .collect();
    let x = HostTensor::from_f32(vec![2, 3, 4, 5], &a).unwrap();
    let attrs = || vec![attr_i("broadcast", 1), attr_i("axis", 1)];
    // B a constant.
    let m = Model::new(6)
        .input("a", F32, &[2, 3, 4, 5])
        .init(tensor_f32("b", &[3, 4], &b))
        .op("Add", &["a", "b"], &["y"], attrs())
        .output("y", F32, &[2, 3, 4, 5]);
    let got = run(load(&m.bytes()).unwrap(), std::slice::from_ref(&x));
    assert_eq!(f32s(&got[0]), want);
    // B a graph input (reshaped at run time).
    let m = Model::new(3)
        .input("a", F32, &[2, 3, 4, 5])
        .input("b", F32, &[3, 4])
        .op("Add", &["a", "b"], &["y"], {
            let mut v = attrs();
            v.push(attr_ints("consumed_inputs", &[0, 0]));
            v
        })
        .output("y", F32, &[2, 3, 4, 5]);
    let bt = HostTensor::from_f32(vec![3, 4], &b).unwrap();
    let got = run(load(&m.bytes()).unwrap(), &[x.clone(), bt]);
    assert_eq!(f32s(&got[0]), want);
    // No axis: B is A's suffix ([5], numpy's alignment too).
    let s: Vec<f32> = (0..5).map(|i| 0.5 * i as f32).collect();
    let m = Model::new(1)
        .input("a", F32, &[2, 3, 4, 5])
        .init(tensor_f32("s", &[5], &s))
        .op("Mul", &["a", "s"], &["y"], vec![attr_i("broadcast", 1)])
        .output("y", F32, &[2, 3, 4, 5]);
    let got = run(load(&m.bytes()).unwrap(), std::slice::from_ref(&x));
    let want: Vec<f32> = a.iter().enumerate().map(|(i, v)| v * s[i % 5]).collect();
    assert_eq!(f32s(&got[0]), want);
}

/// What the early versions forbid, or what inference cannot do, is a typed error naming the
/// node and the reason.
#[test]
fn what_the_early_versions_do_not_allow_is_a_typed_error() {
    let msg = |m: Model| match load(&m.bytes()) {
        Err(e @ ExecError::InvalidNode { .. }) => e.to_string(),
        other => panic!("expected InvalidNode, got {other:?}"),
    };
    // Different shapes without broadcast = 1.
    let m = Model::new(6)
        .input("a", F32, &[2, 3])
        .input("b", F32, &[3])
        .op("Add", &["a", "b"], &["y"], vec![])
        .output_any("y", F32);
    let e = msg(m);
    assert!(e.contains("equal shapes") && e.contains("[2, 3]"), "{e}");
    // B that does not line up from the axis.
    let m = Model::new(6)
        .input("a", F32, &[2, 3, 4])
        .input("b", F32, &[4])
        .op(
            "Add",
            &["a", "b"],
            &["y"],
            vec![attr_i("broadcast", 1), attr_i("axis", 1)],
        )
        .output_any("y", F32);
    let e = msg(m);
    assert!(
        e.contains("does not broadcast") && e.contains("axis 1"),
        "{e}"
    );
    // Training-mode BatchNormalization (is_test defaults to 0).
    let p = tensor_f32("p", &[2], &[1.0, 1.0]);
    let m = Model::new(6)
        .input("x", F32, &[1, 2, 3, 3])
        .init(p)
        .op(
            "BatchNormalization",
            &["x", "p", "p", "p", "p"],
            &["y"],
            vec![],
        )
        .output_any("y", F32);
    let e = msg(m);
    assert!(e.contains("training mode") && e.contains("opset 6"), "{e}");
    // An operator whose first version is not its opset-7 meaning: unsupported below 7.
    let m = Model::new(6)
        .input("x", F32, &[1, 1, 2, 2])
        .op(
            "Upsample",
            &["x"],
            &["y"],
            vec![attr_floats("scales", &[1.0, 1.0, 2.0, 2.0])],
        )
        .output_any("y", F32);
    match load(&m.bytes()) {
        Err(ExecError::UnsupportedOps { ops, .. }) => {
            assert!(ops.iter().any(|(op, _)| op == "Upsample"), "{ops:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// `Reshape`'s shape attribute (opset 1-4), `Concat`'s default axis (1-3), `Pad`'s
/// `paddings` (1), `Cast`'s type name (1-5), test-mode `Dropout` and `BatchNormalization`.
#[test]
fn early_attribute_forms_are_read() {
    let x: Vec<f32> = (0..12).map(|i| i as f32 - 5.5).collect();
    let xt = HostTensor::from_f32(vec![1, 2, 2, 3], &x).unwrap();
    let m = Model::new(1)
        .input("x", F32, &[1, 2, 2, 3])
        .op(
            "Dropout",
            &["x"],
            &["d"],
            vec![attr_i("is_test", 1), attr_f("ratio", 0.5)],
        )
        .op("Concat", &["d", "d"], &["c"], vec![])
        .op(
            "Reshape",
            &["c"],
            &["r"],
            vec![attr_ints("shape", &[0, -1])],
        )
        .op(
            "Pad",
            &["x"],
            &["p"],
            vec![attr_ints("paddings", &[0, 0, 0, 1, 0, 0, 0, 0])],
        )
        .op("Cast", &["x"], &["i"], vec![attr_s("to", "INT32")])
        .output("r", F32, &[1, 24])
        .output("p", F32, &[1, 2, 2, 4])
        .output_any("i", 6);
    let g = load(&m.bytes()).unwrap_or_else(|e| panic!("{e}"));
    let out = run(g, &[xt]);
    // Concat on axis 1 of [1, 2, 2, 3] twice, flattened: the input, then the input again.
    let mut twice = x.clone();
    twice.extend(&x);
    assert_eq!(out[0].shape, vec![1, 24]);
    assert_eq!(f32s(&out[0]), twice);
    // One zero before each row of 3.
    let padded: Vec<f32> = x.chunks(3).flat_map(|r| [0.0, r[0], r[1], r[2]]).collect();
    assert_eq!(f32s(&out[1]), padded);
    // Cast to INT32 truncates toward zero.
    let ints: Vec<i32> = out[2]
        .data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(ints, x.iter().map(|&v| v as i32).collect::<Vec<_>>());
    // Test-mode BatchNormalization at opset 1, with consumed_inputs and spatial.
    let m = Model::new(1)
        .input("x", F32, &[1, 2, 2, 3])
        .init(tensor_f32("s", &[2], &[2.0, 3.0]))
        .init(tensor_f32("b", &[2], &[0.5, -0.5]))
        .init(tensor_f32("mu", &[2], &[1.0, -1.0]))
        .init(tensor_f32("var", &[2], &[4.0, 0.25]))
        .op(
            "BatchNormalization",
            &["x", "s", "b", "mu", "var"],
            &["y"],
            vec![
                attr_i("is_test", 1),
                attr_i("spatial", 1),
                attr_f("epsilon", 0.0),
                attr_ints("consumed_inputs", &[0, 0, 0, 1, 1]),
            ],
        )
        .output("y", F32, &[1, 2, 2, 3]);
    let g = load(&m.bytes()).unwrap_or_else(|e| panic!("{e}"));
    let out = run(g, &[HostTensor::from_f32(vec![1, 2, 2, 3], &x).unwrap()]);
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i < 6 {
                2.0 * (v - 1.0) / 2.0 + 0.5
            } else {
                3.0 * (v + 1.0) / 0.5 - 0.5
            }
        })
        .collect();
    for (g, w) in f32s(&out[0]).iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
    }
}

/// `ImageScaler` (experimental, opsets 1 to 9; Tiny YOLOv2's first node) computes
/// `scale * x + bias[c]`; at opset 10 it no longer exists.
#[test]
fn image_scaler_scales_and_shifts_each_channel() {
    let x: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32 * 0.25 - 1.0).collect();
    let bias = [10.0, -20.0, 0.5];
    let scaler = |opset| {
        Model::new(opset)
            .input("x", F32, &[2, 3, 2, 2])
            .op(
                "ImageScaler",
                &["x"],
                &["y"],
                vec![attr_f("scale", 0.5), attr_floats("bias", &bias)],
            )
            .output("y", F32, &[2, 3, 2, 2])
    };
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| 0.5 * v + bias[(i / 4) % 3])
        .collect();
    for opset in [3, 8] {
        let g = load(&scaler(opset).bytes()).unwrap_or_else(|e| panic!("{e}"));
        let out = run(g, &[HostTensor::from_f32(vec![2, 3, 2, 2], &x).unwrap()]);
        assert_eq!(f32s(&out[0]), want, "opset {opset}");
    }
    let e = load(&scaler(10).bytes()).unwrap_err().to_string();
    assert!(e.contains("ImageScaler") && e.contains("removed"), "{e}");
}
