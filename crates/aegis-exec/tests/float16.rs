//! float16 models: f16 tensors are stored as f16; every operator but `Cast` reads f32 copies
//! of its f16 operands (constants widened at load, run-time tensors through an inserted
//! `Cast`) and its results are rounded back to f16, so each f16 tensor holds what a binary16
//! computation of that operator would round to.

#[path = "malformed/builder.rs"]
mod builder;

use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{
    DType, ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, Op, PreparedModel,
};
use aegis_memory::DeviceMemoryPool;
use builder::*;
use half::f16;

const F16: i32 = 10;

fn f16_tensor(shape: Vec<usize>, v: &[f32]) -> HostTensor {
    HostTensor {
        dtype: DType::F16,
        shape,
        data: v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
    }
}

fn f16_init(name: &str, dims: &[i64], v: &[f32]) -> tract_onnx::pb::TensorProto {
    // ONNX stores float16 outside raw_data as one bit pattern per int32.
    let bits: Vec<i32> = v
        .iter()
        .map(|&x| i32::from(f16::from_f32(x).to_bits()))
        .collect();
    tensor_small_int(name, F16, dims, &bits)
}

fn run(m: &Model, inputs: Vec<HostTensor>) -> (Arc<ExecutionGraph>, Vec<HostTensor>) {
    let g = Arc::new(
        ExecutionGraph::from_bytes(&m.bytes(), "f16", &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 22);
    let model = PreparedModel::prepare(Arc::clone(&g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let outs = Executor::run(&model, &inputs, &[&stream]).unwrap();
    (g, outs)
}

fn bits(t: &HostTensor) -> Vec<u16> {
    assert_eq!(t.dtype, DType::F16);
    t.data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// `s = a + b`, `y = s * c` over three inputs of element type `ty` and length `n` (the
/// caller declares the outputs): the pair that shows one rounding per operator.
fn add_then_mul(ty: i32, n: i64) -> Model {
    Model::new(13)
        .input("a", ty, &[n])
        .input("b", ty, &[n])
        .input("c", ty, &[n])
        .op("Add", &["a", "b"], &["s"], vec![])
        .op("Mul", &["s", "c"], &["y"], vec![])
}

#[test]
fn results_are_rounded_to_f16_once_per_operator() {
    // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even gives 1. 2048 + 1 is a tie
    // between 2048 and 2050: to even gives 2048. 60000 + 10000 overflows binary16: inf.
    let m = add_then_mul(F16, 4)
        .output("s", F16, &[4])
        .output("y", F16, &[4]);
    let a = [1.0, 2048.0, 60000.0, -0.5];
    let b = [0.00048828125, 1.0, 10000.0, 0.25];
    let c = [3.0, 3.0, 1.0, 2.0];
    let (g, outs) = run(
        &m,
        vec![
            f16_tensor(vec![4], &a),
            f16_tensor(vec![4], &b),
            f16_tensor(vec![4], &c),
        ],
    );
    let s: Vec<f16> = bits(&outs[0]).into_iter().map(f16::from_bits).collect();
    assert_eq!(s[0], f16::from_f32(1.0));
    assert_eq!(s[1], f16::from_f32(2048.0));
    assert!(s[2].is_infinite() && s[2].is_sign_positive());
    assert_eq!(s[3], f16::from_f32(-0.25));
    // Mul reads the rounded sum: 1 * 3 = 3 and 2048 * 3 = 6144, where the unrounded sums
    // would give 3 + 2^-9 and 6148.
    let y: Vec<f32> = outs[1].to_f32().unwrap();
    assert_eq!(&y[..2], &[3.0, 6144.0]);
    assert!(y[2].is_infinite());
    assert_eq!(y[3], -0.5);
    // The graph: each input widened once, the sum narrowed and widened again, the product
    // narrowed: six casts around the two f32 operators.
    let casts: Vec<DType> = g
        .operators()
        .iter()
        .filter_map(|n| match n.op {
            Op::Cast { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(
        casts.iter().filter(|&&t| t == DType::F32).count(),
        4,
        "{casts:?}"
    );
    assert_eq!(
        casts.iter().filter(|&&t| t == DType::F16).count(),
        2,
        "{casts:?}"
    );
    for &t in g.inputs().iter().chain(g.outputs()) {
        assert_eq!(g.tensor(t).dtype, DType::F16);
    }
}

/// Conv -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax on a 1x2x6x6 input of type
/// `elem`, its weights built by `t`.
fn conv_net(
    elem: i32,
    t: impl Fn(&str, &[i64], &[f32]) -> tract_onnx::pb::TensorProto,
    w: &[f32],
    bias: &[f32],
    fc: &[f32],
) -> Model {
    Model::new(13)
        .input("x", elem, &[1, 2, 6, 6])
        .init(t("w", &[4, 2, 3, 3], w))
        .init(t("b", &[4], bias))
        .init(t("fc", &[3, 16], fc))
        .op(
            "Conv",
            &["x", "w", "b"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        )
        .op("Relu", &["c"], &["r"], vec![])
        .op(
            "MaxPool",
            &["r"],
            &["p"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[3, 3]),
            ],
        )
        .op("Flatten", &["p"], &["f"], vec![])
        .op("Gemm", &["f", "fc"], &["g"], vec![attr_i("transB", 1)])
        .op("Softmax", &["g"], &["y"], vec![])
        .output("y", elem, &[1, 3])
}

#[test]
fn an_f16_conv_net_matches_the_f32_net_on_the_same_values() {
    // The f16 net against the same net in f32 on the f16 values of the weights and input:
    // the only difference is each intermediate's rounding to f16 (relative 2^-11 per step).
    let w: Vec<f32> = (0..4 * 2 * 3 * 3)
        .map(|i| ((i * 37 % 19) as f32 - 9.0) / 16.0)
        .collect();
    let bias = [0.25, -0.5, 0.125, 0.0];
    let fc: Vec<f32> = (0..3 * 16)
        .map(|i| ((i * 11 % 13) as f32 - 6.0) / 8.0)
        .collect();
    let x: Vec<f32> = (0..2 * 6 * 6)
        .map(|i| ((i * 7 % 23) as f32) / 23.0)
        .collect();
    let (_, half_out) = run(
        &conv_net(F16, f16_init, &w, &bias, &fc),
        vec![f16_tensor(vec![1, 2, 6, 6], &x)],
    );
    let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| f16::from_f32(x).to_f32()).collect() };
    let (_, full_out) = run(
        &conv_net(F32, tensor_f32, &round(&w), &round(&bias), &round(&fc)),
        vec![HostTensor::from_f32(vec![1, 2, 6, 6], &round(&x)).unwrap()],
    );
    let got = half_out[0].to_f32().unwrap();
    let want = full_out[0].to_f32().unwrap();
    assert_eq!(half_out[0].dtype, DType::F16);
    assert_eq!(half_out[0].shape, vec![1, 3]);
    let sum: f32 = got.iter().sum();
    assert!((sum - 1.0).abs() < 4e-3, "softmax sums to {sum}");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 4e-3 * w.abs().max(0.1),
            "element {k}: f16 net {g}, f32 net {w}"
        );
    }
    // Not vacuous: the classes differ, so a wrong net would show.
    assert!(
        want.iter().any(|&v| (v - 1.0 / 3.0).abs() > 0.05),
        "{want:?}"
    );
}

#[test]
fn casts_to_f16_round_to_nearest_even_and_keep_specials() {
    let m = Model::new(13)
        .input("x", F32, &[6])
        .op("Cast", &["x"], &["h"], vec![attr_i("to", 10)])
        .op("Cast", &["h"], &["i"], vec![attr_i("to", 7)])
        .output("h", F16, &[6])
        .output("i", I64, &[6]);
    // 65520 is the first value that rounds to inf; 2^-25 is half the smallest subnormal
    // 2^-24 (a tie: to even, 0); 3 * 2^-25 is 1.5 subnormal units (a tie: to even, 2 units).
    let x = [
        65520.0,
        f32::NAN,
        2.0f32.powi(-25),
        3.0 * 2.0f32.powi(-25),
        -2.5,
        1000.7,
    ];
    let (_, outs) = run(&m, vec![HostTensor::from_f32(vec![6], &x).unwrap()]);
    let h: Vec<f16> = bits(&outs[0]).into_iter().map(f16::from_bits).collect();
    assert!(h[0].is_infinite());
    assert!(h[1].is_nan());
    assert_eq!(h[2].to_bits(), 0);
    assert_eq!(h[3].to_bits(), 2);
    assert_eq!(h[4].to_f32(), -2.5);
    assert_eq!(h[5].to_f32(), 1000.5);
    // f16 -> i64 truncates the f16 value (1000.5 -> 1000, -2.5 -> -2).
    let i: Vec<i64> = outs[1]
        .data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(&i[4..], &[-2, 1000]);
}

#[test]
fn data_movement_on_f16_is_exact_and_casts_once_each_way() {
    // Shape folds at load; Reshape runs on the widened copy and is narrowed back (exact: every
    // f16 value is an f32 value); Identity is removed and forwards the f16 tensor itself.
    let m = Model::new(13)
        .input("x", F16, &[2, 5])
        .op("Shape", &["x"], &["s"], vec![])
        .op("Reshape", &["x", "s"], &["y"], vec![])
        .op("Identity", &["y"], &["z"], vec![])
        .output("z", F16, &[2, 5]);
    let v: Vec<f32> = (0..10).map(|i| i as f32 * 0.37 - 1.0).collect();
    let input = f16_tensor(vec![2, 5], &v);
    let (g, outs) = run(&m, vec![input.clone()]);
    assert_eq!(outs[0].data, input.data);
    assert_eq!(cast_names(&g), vec!["x:to_f32", "y:to_f16"]);
    assert_eq!(g.tensor(g.outputs()[0]).dtype, DType::F16);
}

/// The graph's Cast operators, by name, in execution order.
fn cast_names(g: &ExecutionGraph) -> Vec<&str> {
    g.operators()
        .iter()
        .filter(|n| matches!(n.op, Op::Cast { .. }))
        .map(|n| n.name.as_str())
        .collect()
}

fn bf16_tensor(shape: Vec<usize>, v: &[f32]) -> HostTensor {
    HostTensor {
        dtype: DType::BF16,
        shape,
        data: v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
    }
}

#[test]
fn bf16_takes_the_same_path_with_its_own_rounding() {
    // bf16 keeps 8 significant bits: 256 + 1 is a tie between 256 and 258 (to even: 256),
    // and Mul reads the rounded 256 (256 * 3 = 768; the unrounded 257 * 3 = 771 -> 772).
    const BF16: i32 = 16;
    let m = add_then_mul(BF16, 2)
        .op("Cast", &["y"], &["f"], vec![attr_i("to", 1)])
        .output("s", BF16, &[2])
        .output("f", F32, &[2]);
    let (g, outs) = run(
        &m,
        vec![
            bf16_tensor(vec![2], &[256.0, 1.5]),
            bf16_tensor(vec![2], &[1.0, 0.25]),
            bf16_tensor(vec![2], &[3.0, 2.0]),
        ],
    );
    assert_eq!(outs[0].dtype, DType::BF16);
    assert_eq!(outs[0].to_f32().unwrap(), vec![256.0, 1.75]);
    assert_eq!(outs[1].dtype, DType::F32);
    assert_eq!(outs[1].to_f32().unwrap(), vec![768.0, 3.5]);
    let names = cast_names(&g);
    for want in ["a:to_f32", "s:to_bf16", "y:to_bf16"] {
        assert!(
            names.iter().any(|n| n.ends_with(want) || *n == want),
            "{want} in {names:?}"
        );
    }
    // f32 -> bf16 rounds to nearest even (0x3f51b0e5 -> 0x3f52; truncation gives 0x3f51).
    let m = Model::new(13)
        .input("x", F32, &[2])
        .op("Cast", &["x"], &["h"], vec![attr_i("to", 16)])
        .output("h", BF16, &[2]);
    let x = [f32::from_bits(0x3f51_b0e5), f32::from_bits(0x3f51_8000)];
    let (_, outs) = run(&m, vec![HostTensor::from_f32(vec![2], &x).unwrap()]);
    let b: Vec<u16> = outs[0]
        .data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    // The second is a tie: to the even 0x3f52.
    assert_eq!(b, vec![0x3f52, 0x3f52]);
}
