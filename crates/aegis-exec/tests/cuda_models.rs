#![cfg(feature = "cuda")]
//! The CUDA execution path on a real GPU (needs one; built by `cargo xtask gpu-build`, run
//! from `.gpu-bin/run-all.sh`):
//! - every shared model (`$AEGIS_MODELS_DIR`, default `../shared/models` next to the
//!   repository; each folder with `meta.json` and `test_data_set_0`) on CUDA, eager and
//!   graph replay, against the reference within the model's tolerance and against the host
//!   backend; run-to-run determinism (bit-identical), eager == replay, 1 == 2 streams, and no
//!   device allocation per inference;
//! - every op kernel against the host kernel on random inputs (single-op models).
//!
//! NVRTC is found through `$AEGIS_NVRTC_DIR` or the loader path.

#[path = "malformed/builder.rs"]
mod builder;
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::cuda::{CudaExecError, CudaExecutor, CudaPreparedModel, LaunchMode};
use aegis_exec::{
    DType, ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel,
};
use aegis_memory::DeviceMemoryPool;
use builder::*;
use common::Case;

fn cuda() -> Device {
    Device::cuda(0).unwrap_or_else(|e| panic!("these tests need a CUDA GPU: {e}"))
}

fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AEGIS_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for c in ["../../../shared/models", "../../shared/models"] {
        let p = manifest.join(c);
        if p.is_dir() {
            return p;
        }
    }
    PathBuf::from("shared/models")
}

fn model_names() -> Vec<String> {
    let dir = models_dir();
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set AEGIS_MODELS_DIR)", dir.display()))
        .flatten()
        .filter(|e| {
            e.path().join("meta.json").is_file() && e.path().join("test_data_set_0").is_dir()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn load_case(name: &str) -> Case {
    let data = models_dir().join(name).join("test_data_set_0");
    common::load_case(&models_dir().join(name), |stem| {
        HostTensor::read_pb(&data.join(format!("{stem}.pb")))
    })
}

fn host_run(graph: &Arc<ExecutionGraph>, inputs: &[HostTensor]) -> Vec<HostTensor> {
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 8 << 30);
    let model = PreparedModel::prepare(Arc::clone(graph), &pool, &ExecOptions::default()).unwrap();
    let s = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    Executor::run(&model, inputs, &[&s]).unwrap()
}

/// Worst `|a - b| - (atol + rtol |b|)` over all elements (<= 0 means within tolerance).
fn worst(got: &[HostTensor], want: &[HostTensor], rtol: f32, atol: f32) -> Result<f32, String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, {} expected", got.len(), want.len()));
    }
    let mut w = f32::NEG_INFINITY;
    for (g, e) in got.iter().zip(want) {
        if g.shape != e.shape {
            return Err(format!("shape {:?}, expected {:?}", g.shape, e.shape));
        }
        if g.dtype != DType::F32 || e.dtype != DType::F32 {
            // Integer and bool outputs must match exactly.
            if g != e {
                return Err(format!("{} output differs", g.dtype));
            }
            continue;
        }
        let (g, e) = (g.to_f32().unwrap(), e.to_f32().unwrap());
        for (a, b) in g.iter().zip(&e) {
            let err = if a.is_nan() && b.is_nan() {
                f32::NEG_INFINITY
            } else {
                (a - b).abs() - (atol + rtol * b.abs())
            };
            w = w.max(if err.is_nan() { f32::INFINITY } else { err });
        }
    }
    Ok(w)
}

/// Runs `graph` on CUDA eager (twice) and replay (twice), on `streams` streams.
fn cuda_runs(
    device: &Device,
    graph: &Arc<ExecutionGraph>,
    inputs: &[HostTensor],
    streams: usize,
) -> Result<(Vec<HostTensor>, Vec<HostTensor>), String> {
    let pool = DeviceMemoryPool::new(device, device.memory_free() / 2);
    let opts = ExecOptions {
        streams,
        ..ExecOptions::default()
    };
    let model = CudaPreparedModel::prepare(Arc::clone(graph), &pool, &opts)
        .map_err(|e: CudaExecError| e.to_string())?;
    let ss: Vec<Stream> = (0..streams)
        .map(|_| Stream::new(device, StreamPriority::NORMAL).unwrap())
        .collect();
    let refs: Vec<&Stream> = ss.iter().collect();
    let before = pool.stats().total_allocations;
    let run = |mode| CudaExecutor::run(&model, inputs, &refs, mode).map_err(|e| e.to_string());
    let eager = run(LaunchMode::Eager)?;
    if run(LaunchMode::Eager)? != eager {
        return Err("eager runs differ (not deterministic)".into());
    }
    let replay = run(LaunchMode::Graph)?;
    if !model.graph_ready() {
        return Err("graph capture failed (fell back to eager)".into());
    }
    if run(LaunchMode::Graph)? != replay {
        return Err("graph replays differ".into());
    }
    if pool.stats().total_allocations != before {
        return Err("device memory allocated per inference".into());
    }
    Ok((eager, replay))
}

#[test]
fn every_shared_model_matches_reference_and_host_on_cuda() {
    let device = cuda();
    let names = model_names();
    assert!(!names.is_empty(), "no models in {}", models_dir().display());
    let mut failures = Vec::new();
    for name in &names {
        let case = load_case(name);
        let t0 = std::time::Instant::now();
        let (eager, replay) = match cuda_runs(&device, &case.graph, &case.inputs, 1) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let host = host_run(&case.graph, &case.inputs);
        let vs_ref = worst(&eager, &case.expected, case.rtol, case.atol);
        let vs_host = worst(&eager, &host, case.rtol, case.atol);
        println!(
            "{name}: vs reference {vs_ref:?}, vs host {vs_host:?}, replay == eager {} ({:?})",
            replay == eager,
            t0.elapsed()
        );
        match (vs_ref, vs_host) {
            (Ok(a), Ok(b)) if a <= 0.0 && b <= 0.0 => {}
            (a, b) => failures.push(format!("{name}: vs reference {a:?}, vs host {b:?}")),
        }
        if replay != eager {
            failures.push(format!("{name}: graph replay differs from eager"));
        }
        match cuda_runs(&device, &case.graph, &case.inputs, 2) {
            Ok((two, _)) if two == eager => {}
            Ok(_) => failures.push(format!("{name}: 2 streams differ from 1")),
            Err(e) => failures.push(format!("{name} (2 streams): {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- per-op kernels against the host kernels ----

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

#[derive(Clone, Copy)]
enum Gen {
    /// Uniform in [-2, 2).
    Signed,
    /// Uniform in [0.5, 2.5) (divisors, bases, square roots).
    Positive,
    /// Integers in [-5, 5) as the given dtype.
    Int(DType),
    /// Indices in [-3, 3) (Gather over an axis of >= 3).
    Index,
    Bool,
}

fn gen(shape: &[usize], g: Gen, rng: &mut Lcg) -> HostTensor {
    let n: usize = shape.iter().product();
    let shape = shape.to_vec();
    match g {
        Gen::Signed | Gen::Positive => {
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let u = rng.next();
                    if matches!(g, Gen::Signed) {
                        4.0 * u - 2.0
                    } else {
                        0.5 + 2.0 * u
                    }
                })
                .collect();
            HostTensor::from_f32(shape, &v).unwrap()
        }
        Gen::Int(_) | Gen::Index => {
            let (dt, lo, span) = match g {
                Gen::Int(dt) => (dt, -5i64, 10.0),
                _ => (DType::I64, -3i64, 6.0),
            };
            let vals: Vec<i64> = (0..n).map(|_| lo + (rng.next() * span) as i64).collect();
            let data = match dt {
                DType::I32 => vals
                    .iter()
                    .flat_map(|&v| (v as i32).to_le_bytes())
                    .collect(),
                _ => vals.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            };
            HostTensor {
                dtype: dt,
                shape,
                data,
            }
        }
        Gen::Bool => HostTensor {
            dtype: DType::Bool,
            shape,
            data: (0..n).map(|_| u8::from(rng.next() < 0.5)).collect(),
        },
    }
}

fn elem(dt: DType) -> i32 {
    match dt {
        DType::F32 => F32,
        DType::I64 => I64,
        DType::I32 => I32,
        DType::Bool => BOOL,
        // No case builds another type: the CUDA path has no kernels for them.
        _ => panic!("no CUDA op case uses {dt}"),
    }
}

/// One single-op case: a model builder plus its inputs' shapes and generators.
struct OpCase {
    name: &'static str,
    opset: i64,
    inputs: Vec<(&'static str, Vec<usize>, Gen)>,
    /// Element type of the output `y`.
    y: i32,
    build: fn(Model) -> Model,
}

fn dtype_of(g: Gen) -> DType {
    match g {
        Gen::Signed | Gen::Positive => DType::F32,
        Gen::Int(d) => d,
        Gen::Index => DType::I64,
        Gen::Bool => DType::Bool,
    }
}

fn w(name: &str, dims: &[i64], seed: u64) -> tract_onnx::pb::TensorProto {
    let mut r = Lcg(seed);
    let n: i64 = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.next() - 0.5).collect();
    tensor_f32(name, dims, &v)
}

fn op_cases() -> Vec<OpCase> {
    use Gen::*;
    let f = |n: &'static str, s: &[usize], g: Gen| (n, s.to_vec(), g);
    vec![
        OpCase {
            name: "add_broadcast",
            opset: 13,
            inputs: vec![f("a", &[2, 3, 4], Signed), f("b", &[3, 1], Signed)],
            y: F32,
            build: |m| m.op("Add", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "sub_same",
            opset: 13,
            inputs: vec![f("a", &[4, 33], Signed), f("b", &[4, 33], Signed)],
            y: F32,
            build: |m| m.op("Sub", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "mul_scalar",
            opset: 13,
            inputs: vec![f("a", &[5, 7], Signed), f("b", &[], Signed)],
            y: F32,
            build: |m| m.op("Mul", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "div",
            opset: 13,
            inputs: vec![f("a", &[2, 1, 6], Signed), f("b", &[3, 1], Positive)],
            y: F32,
            build: |m| m.op("Div", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "pow",
            opset: 13,
            inputs: vec![f("a", &[3, 4], Positive), f("b", &[4], Signed)],
            y: F32,
            build: |m| m.op("Pow", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "fmod",
            opset: 13,
            inputs: vec![f("a", &[3, 4], Signed), f("b", &[3, 4], Positive)],
            y: F32,
            build: |m| m.op("Mod", &["a", "b"], &["y"], vec![attr_i("fmod", 1)]),
        },
        OpCase {
            name: "add_i64",
            opset: 13,
            inputs: vec![
                f("a", &[3, 4], Int(DType::I64)),
                f("b", &[4], Int(DType::I64)),
            ],
            y: I64,
            build: |m| m.op("Add", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "mul_i32",
            opset: 13,
            inputs: vec![
                f("a", &[3, 4], Int(DType::I32)),
                f("b", &[3, 4], Int(DType::I32)),
            ],
            y: I32,
            build: |m| m.op("Mul", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "relu",
            opset: 13,
            inputs: vec![f("x", &[1001], Signed)],
            y: F32,
            build: |m| m.op("Relu", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "sigmoid",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| m.op("Sigmoid", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "tanh",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| m.op("Tanh", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "erf",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| m.op("Erf", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "sqrt",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Positive)],
            y: F32,
            build: |m| m.op("Sqrt", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "gelu_tanh",
            opset: 20,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| m.op("Gelu", &["x"], &["y"], vec![attr_s("approximate", "tanh")]),
        },
        OpCase {
            name: "hardsigmoid",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| m.op("HardSigmoid", &["x"], &["y"], vec![attr_f("alpha", 0.3)]),
        },
        OpCase {
            name: "hardswish",
            opset: 14,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| m.op("HardSwish", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "clip",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_f32("lo", &[], &[-0.5]))
                    .init(tensor_f32("hi", &[], &[0.7]))
                    .op("Clip", &["x", "lo", "hi"], &["y"], vec![])
            },
        },
        OpCase {
            name: "equal_i64",
            opset: 13,
            inputs: vec![
                f("a", &[4, 5], Int(DType::I64)),
                f("b", &[5], Int(DType::I64)),
            ],
            y: BOOL,
            build: |m| m.op("Equal", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "where",
            opset: 13,
            inputs: vec![
                f("c", &[2, 1, 4], Bool),
                f("a", &[3, 4], Signed),
                f("b", &[2, 3, 1], Signed),
            ],
            y: F32,
            build: |m| m.op("Where", &["c", "a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "cast_f32_i64",
            opset: 13,
            inputs: vec![f("x", &[3, 5], Signed)],
            y: I64,
            build: |m| m.op("Cast", &["x"], &["y"], vec![attr_i("to", 7)]),
        },
        OpCase {
            name: "sum3",
            opset: 13,
            inputs: vec![
                f("a", &[2, 3], Signed),
                f("b", &[3], Signed),
                f("c", &[2, 1], Signed),
            ],
            y: F32,
            build: |m| m.op("Sum", &["a", "b", "c"], &["y"], vec![]),
        },
        OpCase {
            name: "conv3x3",
            opset: 13,
            inputs: vec![f("x", &[2, 5, 9, 11], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[7, 5, 3, 3], 1)).init(w("b", &[7], 2)).op(
                    "Conv",
                    &["x", "w", "b"],
                    &["y"],
                    vec![attr_ints("pads", &[1, 1, 1, 1])],
                )
            },
        },
        OpCase {
            name: "conv_strided_dilated",
            opset: 13,
            inputs: vec![f("x", &[1, 8, 13, 12], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[70, 8, 3, 2], 3)).op(
                    "Conv",
                    &["x", "w"],
                    &["y"],
                    vec![
                        attr_ints("strides", &[2, 1]),
                        attr_ints("dilations", &[2, 3]),
                        attr_ints("pads", &[2, 0, 1, 3]),
                    ],
                )
            },
        },
        OpCase {
            name: "conv_groups",
            opset: 13,
            inputs: vec![f("x", &[1, 6, 7, 7], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[4, 3, 3, 3], 4)).op(
                    "Conv",
                    &["x", "w"],
                    &["y"],
                    vec![attr_i("group", 2)],
                )
            },
        },
        OpCase {
            // Few output tiles per group: split-K over 2 groups (64 x 64 tiles), then the
            // ordered reduction with the bias.
            name: "conv_grouped_split_k",
            opset: 13,
            inputs: vec![f("x", &[1, 64, 12, 12], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[96, 32, 3, 3], 11))
                    .init(w("b", &[96], 12))
                    .op(
                        "Conv",
                        &["x", "w", "b"],
                        &["y"],
                        vec![attr_i("group", 2), attr_ints("pads", &[1, 1, 1, 1])],
                    )
            },
        },
        OpCase {
            // 128 x 128 tiles on a large plane, split-K, and a Relu fused into the reduction.
            name: "conv_128x128_split_k_relu",
            opset: 13,
            inputs: vec![f("x", &[1, 32, 48, 48], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[128, 32, 3, 3], 13))
                    .init(w("b", &[128], 14))
                    .op(
                        "Conv",
                        &["x", "w", "b"],
                        &["c"],
                        vec![attr_ints("pads", &[1, 1, 1, 1])],
                    )
                    .op("Relu", &["c"], &["y"], vec![])
            },
        },
        OpCase {
            // 128 x 64 tiles (long reduction on a small plane), split-K.
            name: "conv_128x64_split_k",
            opset: 13,
            inputs: vec![f("x", &[1, 256, 7, 7], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[128, 256, 3, 3], 15)).op(
                    "Conv",
                    &["x", "w"],
                    &["y"],
                    vec![attr_ints("pads", &[1, 1, 1, 1])],
                )
            },
        },
        OpCase {
            name: "conv_depthwise",
            opset: 13,
            inputs: vec![f("x", &[2, 6, 10, 9], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[6, 1, 3, 3], 5)).init(w("b", &[6], 6)).op(
                    "Conv",
                    &["x", "w", "b"],
                    &["y"],
                    vec![
                        attr_i("group", 6),
                        attr_ints("strides", &[2, 2]),
                        attr_ints("pads", &[1, 1, 1, 1]),
                    ],
                )
            },
        },
        OpCase {
            name: "conv_1d",
            opset: 13,
            inputs: vec![f("x", &[1, 4, 20], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[3, 4, 5], 7)).op(
                    "Conv",
                    &["x", "w"],
                    &["y"],
                    vec![attr_ints("pads", &[2, 2])],
                )
            },
        },
        OpCase {
            name: "conv_transpose",
            opset: 13,
            inputs: vec![f("x", &[1, 4, 5, 6], Signed)],
            y: F32,
            build: |m| {
                m.init(w("w", &[4, 3, 3, 3], 8)).init(w("b", &[3], 9)).op(
                    "ConvTranspose",
                    &["x", "w", "b"],
                    &["y"],
                    vec![
                        attr_ints("strides", &[2, 2]),
                        attr_ints("pads", &[1, 1, 0, 0]),
                    ],
                )
            },
        },
        OpCase {
            name: "batchnorm",
            opset: 13,
            inputs: vec![f("x", &[2, 3, 4, 5], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_f32("s", &[3], &[1.0, 0.5, 2.0]))
                    .init(tensor_f32("b", &[3], &[0.1, -0.2, 0.3]))
                    .init(tensor_f32("mu", &[3], &[0.0, 0.5, -0.5]))
                    .init(tensor_f32("var", &[3], &[1.0, 2.0, 0.5]))
                    .op(
                        "BatchNormalization",
                        &["x", "s", "b", "mu", "var"],
                        &["y"],
                        vec![],
                    )
            },
        },
        OpCase {
            name: "avgpool_pads_ceil",
            opset: 13,
            inputs: vec![f("x", &[1, 3, 9, 10], Signed)],
            y: F32,
            build: |m| {
                m.op(
                    "AveragePool",
                    &["x"],
                    &["y"],
                    vec![
                        attr_ints("kernel_shape", &[3, 3]),
                        attr_ints("strides", &[2, 2]),
                        attr_ints("pads", &[1, 1, 1, 1]),
                        attr_i("ceil_mode", 1),
                        attr_i("count_include_pad", 1),
                    ],
                )
            },
        },
        OpCase {
            name: "maxpool_dilated",
            opset: 13,
            inputs: vec![f("x", &[2, 3, 11, 11], Signed)],
            y: F32,
            build: |m| {
                m.op(
                    "MaxPool",
                    &["x"],
                    &["y"],
                    vec![
                        attr_ints("kernel_shape", &[3, 3]),
                        attr_ints("dilations", &[2, 2]),
                        attr_ints("pads", &[1, 1, 1, 1]),
                    ],
                )
            },
        },
        OpCase {
            name: "global_avgpool",
            opset: 13,
            inputs: vec![f("x", &[2, 5, 7, 9], Signed)],
            y: F32,
            build: |m| m.op("GlobalAveragePool", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "lrn",
            opset: 13,
            inputs: vec![f("x", &[1, 7, 4, 4], Signed)],
            y: F32,
            build: |m| {
                m.op(
                    "LRN",
                    &["x"],
                    &["y"],
                    vec![
                        attr_i("size", 3),
                        attr_f("alpha", 0.001),
                        attr_f("beta", 0.75),
                        attr_f("bias", 1.0),
                    ],
                )
            },
        },
        OpCase {
            name: "gemm_trans",
            opset: 13,
            inputs: vec![
                f("a", &[37, 70], Signed),
                f("b", &[65, 37], Signed),
                f("c", &[65], Signed),
            ],
            y: F32,
            build: |m| {
                m.op(
                    "Gemm",
                    &["a", "b", "c"],
                    &["y"],
                    vec![
                        attr_i("transA", 1),
                        attr_i("transB", 1),
                        attr_f("alpha", 0.5),
                        attr_f("beta", 2.0),
                    ],
                )
            },
        },
        OpCase {
            // M == 1 runs the GEMV kernel: k-contiguous B (transB) with float4 loads.
            name: "gemm_row_transb_vec4",
            opset: 13,
            inputs: vec![
                f("a", &[1, 256], Signed),
                f("b", &[100, 256], Signed),
                f("c", &[100], Signed),
            ],
            y: F32,
            build: |m| m.op("Gemm", &["a", "b", "c"], &["y"], vec![attr_i("transB", 1)]),
        },
        OpCase {
            // GEMV with row-major B and an odd K (no float4).
            name: "gemm_row",
            opset: 13,
            inputs: vec![f("a", &[1, 37], Signed), f("b", &[37, 50], Signed)],
            y: F32,
            build: |m| m.op("Gemm", &["a", "b"], &["y"], vec![attr_f("alpha", 0.5)]),
        },
        OpCase {
            name: "matmul_vec4",
            opset: 13,
            inputs: vec![f("a", &[3, 65, 64], Signed), f("b", &[64, 132], Signed)],
            y: F32,
            build: |m| m.op("MatMul", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "matmul_batched_broadcast",
            opset: 13,
            inputs: vec![f("a", &[2, 1, 5, 7], Signed), f("b", &[3, 7, 6], Signed)],
            y: F32,
            build: |m| m.op("MatMul", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "matmul_1d",
            opset: 13,
            inputs: vec![f("a", &[7], Signed), f("b", &[2, 7, 3], Signed)],
            y: F32,
            build: |m| m.op("MatMul", &["a", "b"], &["y"], vec![]),
        },
        OpCase {
            name: "concat",
            opset: 13,
            inputs: vec![f("a", &[2, 3, 4], Signed), f("b", &[2, 5, 4], Signed)],
            y: F32,
            build: |m| m.op("Concat", &["a", "b"], &["y"], vec![attr_i("axis", 1)]),
        },
        OpCase {
            name: "split",
            opset: 13,
            inputs: vec![f("x", &[2, 7, 3], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_i64("s", &[2], &[3, 4]))
                    .op("Split", &["x", "s"], &["y", "z"], vec![attr_i("axis", 1)])
                    .output_any("z", F32)
            },
        },
        OpCase {
            name: "slice_negative_step",
            opset: 13,
            inputs: vec![f("x", &[5, 8], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_i64("st", &[2], &[4, 1]))
                    .init(tensor_i64("en", &[2], &[0, 8]))
                    .init(tensor_i64("ax", &[2], &[0, 1]))
                    .init(tensor_i64("sp", &[2], &[-2, 3]))
                    .op("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![])
            },
        },
        OpCase {
            name: "gather",
            opset: 13,
            inputs: vec![f("x", &[4, 5, 3], Signed), f("i", &[2, 3], Index)],
            y: F32,
            build: |m| m.op("Gather", &["x", "i"], &["y"], vec![attr_i("axis", 1)]),
        },
        OpCase {
            name: "transpose",
            opset: 13,
            inputs: vec![f("x", &[2, 3, 4, 5], Signed)],
            y: F32,
            build: |m| {
                m.op(
                    "Transpose",
                    &["x"],
                    &["y"],
                    vec![attr_ints("perm", &[0, 2, 3, 1])],
                )
            },
        },
        OpCase {
            name: "expand",
            opset: 13,
            inputs: vec![f("x", &[3, 1], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_i64("s", &[3], &[2, 3, 4]))
                    .op("Expand", &["x", "s"], &["y"], vec![])
            },
        },
        OpCase {
            name: "pad_reflect",
            opset: 13,
            inputs: vec![f("x", &[1, 2, 4, 5], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_i64("p", &[8], &[0, 0, 2, 1, 0, 0, 1, 3])).op(
                    "Pad",
                    &["x", "p"],
                    &["y"],
                    vec![attr_s("mode", "reflect")],
                )
            },
        },
        OpCase {
            name: "pad_constant_crop",
            opset: 13,
            inputs: vec![f("x", &[3, 6], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_i64("p", &[4], &[1, -2, 2, 1]))
                    .init(tensor_f32("v", &[], &[0.25]))
                    .op("Pad", &["x", "p", "v"], &["y"], vec![])
            },
        },
        OpCase {
            name: "resize_nearest",
            opset: 13,
            inputs: vec![f("x", &[1, 2, 3, 4], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_f32("roi", &[0], &[]))
                    .init(tensor_f32("sc", &[4], &[1.0, 1.0, 2.0, 1.5]))
                    .op(
                        "Resize",
                        &["x", "roi", "sc"],
                        &["y"],
                        vec![attr_s("mode", "nearest")],
                    )
            },
        },
        OpCase {
            name: "resize_linear",
            opset: 13,
            inputs: vec![f("x", &[1, 2, 5, 4], Signed)],
            y: F32,
            build: |m| {
                m.init(tensor_f32("roi", &[0], &[]))
                    .init(tensor_f32("sc", &[4], &[1.0, 1.0, 1.6, 2.0]))
                    .op(
                        "Resize",
                        &["x", "roi", "sc"],
                        &["y"],
                        vec![attr_s("mode", "linear")],
                    )
            },
        },
        OpCase {
            name: "reduce_mean_inner",
            opset: 13,
            inputs: vec![f("x", &[3, 4, 50], Signed)],
            y: F32,
            build: |m| m.op("ReduceMean", &["x"], &["y"], vec![attr_ints("axes", &[2])]),
        },
        OpCase {
            name: "reduce_mean_middle",
            opset: 13,
            inputs: vec![f("x", &[3, 4, 5], Signed)],
            y: F32,
            build: |m| {
                m.op(
                    "ReduceMean",
                    &["x"],
                    &["y"],
                    vec![attr_ints("axes", &[0, 2]), attr_i("keepdims", 0)],
                )
            },
        },
        OpCase {
            name: "softmax_last",
            opset: 13,
            inputs: vec![f("x", &[6, 300], Signed)],
            y: F32,
            build: |m| m.op("Softmax", &["x"], &["y"], vec![]),
        },
        OpCase {
            name: "softmax_axis1",
            opset: 13,
            inputs: vec![f("x", &[2, 5, 7], Signed)],
            y: F32,
            build: |m| m.op("Softmax", &["x"], &["y"], vec![attr_i("axis", 1)]),
        },
        OpCase {
            name: "softmax_legacy",
            opset: 11,
            inputs: vec![f("x", &[2, 5, 7], Signed)],
            y: F32,
            build: |m| m.op("Softmax", &["x"], &["y"], vec![attr_i("axis", 1)]),
        },
        OpCase {
            name: "layernorm",
            opset: 17,
            inputs: vec![f("x", &[4, 6, 40], Signed)],
            y: F32,
            build: |m| {
                m.init(w("s", &[40], 10)).init(w("b", &[40], 11)).op(
                    "LayerNormalization",
                    &["x", "s", "b"],
                    &["y"],
                    vec![],
                )
            },
        },
    ]
}

#[test]
fn every_op_kernel_matches_the_host_kernel() {
    let device = cuda();
    let mut failures = Vec::new();
    let cases = op_cases();
    for (ci, case) in cases.iter().enumerate() {
        let mut rng = Lcg(0x5eed + ci as u64);
        let mut m = Model::new(case.opset);
        let mut inputs = Vec::new();
        for (name, shape, g) in &case.inputs {
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            m = m.input(name, elem(dtype_of(*g)), &dims);
            inputs.push(gen(shape, *g, &mut rng));
        }
        let m = (case.build)(m).output_any("y", case.y);
        let graph = match ExecutionGraph::from_bytes(&m.bytes(), case.name, &LoadOptions::default())
        {
            Ok(g) => Arc::new(g),
            Err(e) => {
                failures.push(format!("{}: load: {e}", case.name));
                continue;
            }
        };
        let host = host_run(&graph, &inputs);
        match cuda_runs(&device, &graph, &inputs, 1) {
            Ok((eager, replay)) => {
                // Absolute tolerance on the output's scale: a long reduction summed in
                // another order differs by a few ulps of its largest partial sums, which an
                // output near zero cannot absorb in a relative tolerance.
                let scale =
                    host.iter()
                        .filter_map(|t| t.to_f32().ok())
                        .flatten()
                        .fold(
                            1.0f32,
                            |m, v| if v.is_finite() { m.max(v.abs()) } else { m },
                        );
                match worst(&eager, &host, 1e-4, 1e-5 * scale) {
                    Ok(w) if w <= 0.0 => {}
                    other => failures.push(format!("{}: vs host {other:?}", case.name)),
                }
                if eager != replay {
                    failures.push(format!("{}: replay differs from eager", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    println!("{} op cases, {} failures", cases.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
