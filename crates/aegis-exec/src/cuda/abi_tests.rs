//! GPU-free checks of the host/kernel interface: every launch the lowering produces (for the
//! shared models and single-op models of every op) names a kernel whose CUDA C signature has
//! exactly as many parameters, of the same sizes, as the arguments passed; parameter tables
//! are in range; grids are non-empty. (A mismatch would otherwise only show on a GPU, where
//! `Stream::launch` refuses it against the PTX signature.)

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aegis_cuda::{Device, DeviceMemory};

use super::kernels::{K, KERNEL_SOURCES, TABLE};
use super::lower::{lower, scratch_bytes, ConvSlots, LaunchSpec, NodeIo, Params, A};
use super::test_builder::*;
use crate::graph::ExecutionGraph;
use crate::LoadOptions;

/// Parameter sizes of every `extern "C"` kernel in the sources, parsed from the C text.
fn c_signatures() -> HashMap<String, Vec<usize>> {
    let mut out = HashMap::new();
    for (_, src) in KERNEL_SOURCES {
        let mut rest = src;
        while let Some(pos) = rest.find("extern \"C\" __global__") {
            rest = &rest[pos + 22..];
            let open = rest.find('(').unwrap();
            let mut head = &rest[..open];
            // `void __launch_bounds__(N) name(`: the name follows the bounds' parentheses.
            let mut params_from = open;
            if head.contains("__launch_bounds__") {
                let close = rest[open..].find(')').unwrap() + open;
                let next_open = rest[close..].find('(').unwrap() + close;
                head = &rest[close + 1..next_open];
                params_from = next_open;
            }
            let name = head.split_whitespace().last().unwrap().to_owned();
            let close = rest[params_from..].find(')').unwrap() + params_from;
            let sizes = rest[params_from + 1..close]
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    if p.contains('*') || p.contains("long long") || p.starts_with("double") {
                        8
                    } else if p.starts_with("int ") || p.starts_with("float ") {
                        4
                    } else {
                        panic!("unknown parameter type in {name}: {p}")
                    }
                })
                .collect();
            out.insert(name, sizes);
            rest = &rest[close..];
        }
    }
    out
}

/// Lowers every node (H200-sized: 132 multiprocessors, each taken to hold 4 blocks of the
/// 64-channel conv kernel and 2 of the 128-channel one, so small convs split their reduction) and checks each launch against its kernel's signature; returns the launches
/// and how many of them were split-K reductions.
fn check_graph(g: &ExecutionGraph, sigs: &HashMap<String, Vec<usize>>) -> (usize, usize) {
    const SLOTS: ConvSlots = ConvSlots {
        sms: 132,
        per_sm_64: 4,
        per_sm_128: 2,
    };
    let device = Device::host();
    let n = g.tensors().len();
    let mem = DeviceMemory::alloc(&device, 256 * n.max(1)).unwrap();
    let slice = |t: crate::TensorId| mem.slice(256 * t.index()..256 * (t.index() + 1)).unwrap();
    let order = g.topological_order();
    let need = order
        .iter()
        .map(|id| scratch_bytes(g, g.node(*id), SLOTS))
        .max()
        .unwrap_or(0);
    let scratch = DeviceMemory::alloc(&device, need.max(1) as usize).unwrap();
    let mut params = Params::default();
    let (mut launches, mut splits) = (0, 0);
    for id in order {
        let node = g.node(*id);
        let io = NodeIo {
            g,
            node,
            ins: node.inputs.iter().map(|&t| slice(t)).collect(),
            outs: node.outputs.iter().map(|&t| slice(t)).collect(),
            act: None,
            scratch: (scratch_bytes(g, node, SLOTS) > 0).then(|| scratch.as_slice()),
            slots: SLOTS,
        };
        let specs = lower(&io, None, &mut params)
            .unwrap_or_else(|e| panic!("{}: {} ({:?})", g.name(), node.name, e));
        for spec in specs {
            launches += 1;
            let LaunchSpec::Kernel {
                k,
                grid,
                block,
                args,
            } = spec
            else {
                continue;
            };
            splits += usize::from(k == K::ConvSplitReduce);
            let entry = TABLE[k as usize].2;
            let want = &sigs[entry];
            let got: Vec<usize> = args
                .iter()
                .map(|a| match a {
                    A::T(_) | A::P(_) | A::U64(_) => 8,
                    A::I32(_) | A::F32(_) => 4,
                })
                .collect();
            assert_eq!(&got, want, "{}: node {} -> {entry}", g.name(), node.name);
            for a in &args {
                if let A::P(i) = a {
                    assert!(*i < params.blobs.len() && !params.blobs[*i].is_empty());
                }
            }
            assert!(grid.x > 0 && grid.y > 0 && grid.z > 0 && block.x > 0);
        }
    }
    (launches, splits)
}

#[test]
fn every_kernel_in_the_table_has_a_parsed_signature() {
    let sigs = c_signatures();
    for (_, _, entry) in TABLE {
        assert!(sigs.contains_key(entry), "{entry}");
    }
    assert_eq!(sigs["sgemm_f32"], vec![8, 8, 8, 8, 8, 4, 4]);
    assert_eq!(sigs["sgemv_f32"], sigs["sgemm_f32"]);
    assert_eq!(sigs["unary_f32"], vec![8, 8, 8, 4, 4, 4]);
}

#[test]
fn shared_models_lower_to_launches_matching_the_kernel_signatures() {
    let sigs = c_signatures();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    let mut checked = 0;
    for name in [
        "tv-mobilenet_v2",
        "tv-squeezenet1_1",
        "tv-transformer_encoder_2l",
        "lightrand-shufflenet",
        "ppocr-mobile-v2-cls",
    ] {
        let d = dir.join(name);
        let file = if d.join("model_static.onnx").exists() {
            d.join("model_static.onnx")
        } else {
            d.join("model.onnx")
        };
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
        let mut opts = LoadOptions::default();
        for i in meta["inputs"].as_array().unwrap() {
            let shape = i["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap_or(1) as usize)
                .collect();
            opts = opts.with_input_shape(i["name"].as_str().unwrap(), shape);
        }
        let g = ExecutionGraph::load(&file, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (launches, splits) = check_graph(&g, &sigs);
        assert!(launches > 0, "{name}");
        if name == "tv-mobilenet_v2" {
            // Its 7x7 convs (1 x 3-5 output tiles) split their reduction.
            assert!(splits > 0, "{name}: no split-K conv");
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

fn one(m: Model) -> Arc<ExecutionGraph> {
    Arc::new(
        ExecutionGraph::from_bytes(&m.bytes(), "op", &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn wt(name: &str, dims: &[i64]) -> tract_onnx::pb::TensorProto {
    let n: i64 = dims.iter().product();
    tensor_f32(name, dims, &vec![0.25; n as usize])
}

#[test]
fn every_op_lowers_to_launches_matching_the_kernel_signatures() {
    let sigs = c_signatures();
    let f = |m: Model| m.output_any("y", F32);
    let models = vec![
        f(Model::new(13)
            .input("a", F32, &[2, 3, 4])
            .input("b", F32, &[3, 1])
            .op("Add", &["a", "b"], &["y"], vec![])),
        f(Model::new(13)
            .input("a", F32, &[2, 3])
            .input("b", F32, &[2, 3])
            .op("Pow", &["a", "b"], &["y"], vec![])),
        f(Model::new(13)
            .input("a", F32, &[2, 3])
            .input("b", I64, &[3])
            .op("Pow", &["a", "b"], &["y"], vec![])),
        Model::new(13)
            .input("a", I64, &[2, 3])
            .input("b", I64, &[3])
            .op("Div", &["a", "b"], &["y"], vec![])
            .output_any("y", I64),
        Model::new(13)
            .input("a", I32, &[2, 3])
            .input("b", I32, &[2, 3])
            .op("Mod", &["a", "b"], &["y"], vec![])
            .output_any("y", I32),
        f(Model::new(13)
            .input("x", F32, &[7])
            .op("Erf", &["x"], &["y"], vec![])),
        f(Model::new(13)
            .input("x", F32, &[7])
            .init(tensor_f32("lo", &[], &[0.0]))
            .op("Clip", &["x", "lo"], &["y"], vec![])),
        Model::new(13)
            .input("a", I64, &[2, 3])
            .input("b", I64, &[3])
            .op("Equal", &["a", "b"], &["y"], vec![])
            .output_any("y", BOOL),
        f(Model::new(13)
            .input("c", BOOL, &[2, 1])
            .input("a", F32, &[3])
            .input("b", F32, &[2, 3])
            .op("Where", &["c", "a", "b"], &["y"], vec![])),
        Model::new(13)
            .input("x", F32, &[4])
            .op("Cast", &["x"], &["y"], vec![attr_i("to", 7)])
            .output_any("y", I64),
        f(Model::new(13)
            .input("a", F32, &[2, 3])
            .input("b", F32, &[3])
            .input("c", F32, &[2, 1])
            .op("Sum", &["a", "b", "c"], &["y"], vec![])),
        f(Model::new(13)
            .input("x", F32, &[1, 4, 8, 8])
            .init(wt("w", &[6, 2, 3, 3]))
            .init(wt("b", &[6]))
            .op(
                "Conv",
                &["x", "w", "b"],
                &["y"],
                vec![attr_i("group", 2), attr_ints("pads", &[1, 1, 1, 1])],
            )),
        f(Model::new(13)
            .input("x", F32, &[1, 4, 8, 8])
            .init(wt("w", &[4, 1, 3, 3]))
            .op("Conv", &["x", "w"], &["y"], vec![attr_i("group", 4)])),
        f(Model::new(13)
            .input("x", F32, &[1, 4, 5, 5])
            .init(wt("w", &[4, 2, 3, 3]))
            .op(
                "ConvTranspose",
                &["x", "w"],
                &["y"],
                vec![attr_ints("strides", &[2, 2])],
            )),
        f(Model::new(13)
            .input("x", F32, &[1, 3, 4, 4])
            .init(wt("s", &[3]))
            .init(wt("b", &[3]))
            .init(wt("m", &[3]))
            .init(wt("v", &[3]))
            .op(
                "BatchNormalization",
                &["x", "s", "b", "m", "v"],
                &["y"],
                vec![],
            )),
        f(Model::new(13).input("x", F32, &[1, 3, 9, 9]).op(
            "AveragePool",
            &["x"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_i("ceil_mode", 1),
                attr_ints("strides", &[2, 2]),
            ],
        )),
        f(Model::new(13).input("x", F32, &[1, 3, 9, 9]).op(
            "MaxPool",
            &["x"],
            &["y"],
            vec![attr_ints("kernel_shape", &[2, 2])],
        )),
        f(Model::new(13).input("x", F32, &[1, 3, 9, 9]).op(
            "GlobalAveragePool",
            &["x"],
            &["y"],
            vec![],
        )),
        f(Model::new(13).input("x", F32, &[1, 5, 3, 3]).op(
            "LRN",
            &["x"],
            &["y"],
            vec![attr_i("size", 3)],
        )),
        f(Model::new(13)
            .input("a", F32, &[4, 6])
            .input("b", F32, &[5, 6])
            .input("c", F32, &[5])
            .op("Gemm", &["a", "b", "c"], &["y"], vec![attr_i("transB", 1)])),
        f(Model::new(13)
            .input("a", F32, &[2, 1, 3, 4])
            .input("b", F32, &[3, 4, 8])
            .op("MatMul", &["a", "b"], &["y"], vec![])),
        f(Model::new(13)
            .input("a", F32, &[2, 3])
            .input("b", F32, &[2, 5])
            .op("Concat", &["a", "b"], &["y"], vec![attr_i("axis", 1)])),
        f(Model::new(13)
            .input("x", F32, &[2, 6])
            .init(tensor_i64("s", &[2], &[2, 4]))
            .op("Split", &["x", "s"], &["y", "z"], vec![attr_i("axis", 1)])
            .output_any("z", F32)),
        f(Model::new(13)
            .input("x", F32, &[5, 8])
            .init(tensor_i64("st", &[1], &[4]))
            .init(tensor_i64("en", &[1], &[0]))
            .init(tensor_i64("ax", &[1], &[0]))
            .init(tensor_i64("sp", &[1], &[-1]))
            .op("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![])),
        f(Model::new(13)
            .input("x", F32, &[4, 5])
            .input("i", I32, &[3])
            .op("Gather", &["x", "i"], &["y"], vec![])),
        f(Model::new(13).input("x", F32, &[2, 3, 4]).op(
            "Transpose",
            &["x"],
            &["y"],
            vec![attr_ints("perm", &[2, 0, 1])],
        )),
        f(Model::new(13)
            .input("x", F32, &[3, 1])
            .init(tensor_i64("s", &[2], &[3, 4]))
            .op("Expand", &["x", "s"], &["y"], vec![])),
        f(Model::new(13)
            .input("x", F32, &[3, 4])
            .init(tensor_i64("p", &[4], &[1, 1, 1, 1]))
            .op("Pad", &["x", "p"], &["y"], vec![attr_s("mode", "edge")])),
        f(Model::new(13)
            .input("x", F32, &[1, 1, 3, 3])
            .init(tensor_f32("roi", &[0], &[]))
            .init(tensor_f32("sc", &[4], &[1.0, 1.0, 2.0, 2.0]))
            .op(
                "Resize",
                &["x", "roi", "sc"],
                &["y"],
                vec![attr_s("mode", "nearest")],
            )),
        f(Model::new(13)
            .input("x", F32, &[1, 1, 3, 3])
            .init(tensor_f32("roi", &[0], &[]))
            .init(tensor_f32("sc", &[4], &[1.0, 1.0, 2.0, 2.0]))
            .op(
                "Resize",
                &["x", "roi", "sc"],
                &["y"],
                vec![attr_s("mode", "linear")],
            )),
        f(Model::new(13).input("x", F32, &[3, 4, 5]).op(
            "ReduceMean",
            &["x"],
            &["y"],
            vec![attr_ints("axes", &[1])],
        )),
        f(Model::new(13).input("x", F32, &[3, 4, 5]).op(
            "ReduceMean",
            &["x"],
            &["y"],
            vec![attr_ints("axes", &[2])],
        )),
        f(Model::new(13).input("x", F32, &[3, 4, 5]).op(
            "Softmax",
            &["x"],
            &["y"],
            vec![attr_i("axis", 1)],
        )),
        f(Model::new(13)
            .input("x", F32, &[3, 4, 5])
            .op("Softmax", &["x"], &["y"], vec![])),
        f(Model::new(17)
            .input("x", F32, &[3, 8])
            .init(wt("s", &[8]))
            .op("LayerNormalization", &["x", "s"], &["y"], vec![])),
        f(Model::new(13)
            .input("x", F32, &[3, 8])
            .init(tensor_i64("s", &[2], &[8, 3]))
            .op("Reshape", &["x", "s"], &["y"], vec![])),
    ];
    let count = models.len();
    for m in models {
        let g = one(m);
        assert!(check_graph(&g, &sigs).0 > 0, "{:?}", g.op_histogram());
    }
    assert_eq!(count, 36);
}
