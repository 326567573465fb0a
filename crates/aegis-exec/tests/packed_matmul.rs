//! MatMul and Gemm on a constant matrix run on that matrix packed at load, with a Gemm's
//! constant row `C`, a MatMul's bias Add and a following activation fused in where the graph
//! allows it. Built in code, run end to end on the host backend at 1 and 2 threads, and
//! compared with a naive f64 product: the fused forms, and the forms that keep the host GEMM
//! (a per-row `C`, a single row, a bias Add whose MatMul output is also read elsewhere).

#[path = "malformed/builder.rs"]
mod builder;

use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{
    DType, ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel,
};
use aegis_memory::DeviceMemoryPool;
use builder::*;

fn vals(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(97));
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn f32_tensor(shape: Vec<usize>, v: &[f32]) -> HostTensor {
    HostTensor {
        dtype: DType::F32,
        shape,
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn floats(t: &HostTensor) -> Vec<f32> {
    assert_eq!(t.dtype, DType::F32);
    t.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every output of `m` on input `x`, at `threads`.
fn run(m: &Model, x: HostTensor, threads: usize) -> Vec<Vec<f32>> {
    let g = Arc::new(
        ExecutionGraph::from_bytes(&m.bytes(), "packed", &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 24);
    let options = ExecOptions {
        threads,
        ..ExecOptions::default()
    };
    let model = PreparedModel::prepare(g, &pool, &options).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    Executor::run(&model, &[x], &[&stream])
        .unwrap()
        .iter()
        .map(floats)
        .collect()
}

/// `act(a * b + bias)`, `a` `[m, k]`, `b` `[k, n]` (`[n, k]` when `trans_b`), in f64.
fn reference(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    trans_b: bool,
    bias: impl Fn(usize, usize) -> f32,
    act: impl Fn(f64) -> f64,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|kk| {
                    let bv = if trans_b {
                        b[j * k + kk]
                    } else {
                        b[kk * n + j]
                    };
                    f64::from(a[i * k + kk]) * f64::from(bv)
                })
                .sum();
            out.push(act(s + f64::from(bias(i, j))) as f32);
        }
    }
    out
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()) * 8.0,
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn relu(v: f64) -> f64 {
    v.max(0.0)
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

#[test]
fn matmul_with_bias_add_and_relu() {
    // A batch of 2 x 12 rows (a short last step of 8), 500 columns (a partial last block:
    // 12 padded columns, under the 1/16 the packed path accepts).
    let (m, k, n) = (24, 20, 500);
    let (a, b, c) = (vals(m * k, 1), vals(k * n, 2), vals(n, 3));
    for bias_dims in [vec![n as i64], vec![1, 1, n as i64]] {
        let model = Model::new(13)
            .input("a", F32, &[2, 12, k as i64])
            .init(tensor_f32("b", &[k as i64, n as i64], &b))
            .init(tensor_f32("c", &bias_dims, &c))
            .op("MatMul", &["a", "b"], &["p"], vec![])
            .op("Add", &["c", "p"], &["s"], vec![])
            .op("Relu", &["s"], &["y"], vec![])
            .output("y", F32, &[2, 12, n as i64]);
        let want = reference(&a, &b, (m, k, n), false, |_, j| c[j], relu);
        for threads in [1, 2] {
            let got = run(&model, f32_tensor(vec![2, 12, k], &a), threads);
            assert_close(
                &format!("bias {bias_dims:?} threads {threads}"),
                &got[0],
                &want,
            );
        }
    }
}

#[test]
fn matmul_whose_output_is_also_read_elsewhere_keeps_its_add() {
    // `p` is a graph output too: the Add cannot run inside the MatMul.
    let (m, k, n) = (16, 9, 32);
    let (a, b, c) = (vals(m * k, 4), vals(k * n, 5), vals(n, 6));
    let model = Model::new(13)
        .input("a", F32, &[m as i64, k as i64])
        .init(tensor_f32("b", &[k as i64, n as i64], &b))
        .init(tensor_f32("c", &[n as i64], &c))
        .op("MatMul", &["a", "b"], &["p"], vec![])
        .op("Add", &["p", "c"], &["y"], vec![])
        .output("p", F32, &[m as i64, n as i64])
        .output("y", F32, &[m as i64, n as i64]);
    let plain = reference(&a, &b, (m, k, n), false, |_, _| 0.0, |v| v);
    let biased = reference(&a, &b, (m, k, n), false, |_, j| c[j], |v| v);
    for threads in [1, 2] {
        let got = run(&model, f32_tensor(vec![m, k], &a), threads);
        assert_close("p", &got[0], &plain);
        assert_close("y", &got[1], &biased);
    }
}

/// A gated feed-forward layer as Llama-style models export it, `silu(a W1) * (a W3)` with
/// SiLU written as `Mul(h, Sigmoid(h))`: the SiLU pair runs in the first product's epilogue;
/// with `h` also a graph output, as one pass of its own beside it.
#[test]
fn matmul_then_exported_silu_and_a_gate() {
    let (m, k, n) = (12, 16, 64);
    let (a, w1, w3) = (vals(m * k, 10), vals(k * n, 11), vals(k * n, 12));
    let silu = |v: f64| v * sigmoid(v);
    let h = reference(&a, &w1, (m, k, n), false, |_, _| 0.0, |v| v);
    let hs = reference(&a, &w1, (m, k, n), false, |_, _| 0.0, silu);
    let g = reference(&a, &w3, (m, k, n), false, |_, _| 0.0, |v| v);
    let want: Vec<f32> = hs.iter().zip(&g).map(|(x, y)| x * y).collect();
    for h_out in [false, true] {
        let mut model = Model::new(13)
            .input("a", F32, &[m as i64, k as i64])
            .init(tensor_f32("w1", &[k as i64, n as i64], &w1))
            .init(tensor_f32("w3", &[k as i64, n as i64], &w3))
            .op("MatMul", &["a", "w1"], &["h"], vec![])
            .op("Sigmoid", &["h"], &["s"], vec![])
            .op("Mul", &["s", "h"], &["silu"], vec![])
            .op("MatMul", &["a", "w3"], &["g"], vec![])
            .op("Mul", &["silu", "g"], &["y"], vec![])
            .output("y", F32, &[m as i64, n as i64]);
        if h_out {
            model = model.output("h", F32, &[m as i64, n as i64]);
        }
        for threads in [1, 2] {
            let got = run(&model, f32_tensor(vec![m, k], &a), threads);
            let what = format!("h output {h_out}, threads {threads}");
            assert_close(&what, &got[0], &want);
            if h_out {
                assert_close(&what, &got[1], &h);
            }
        }
    }
}

#[test]
fn gemm_with_trans_b_a_scaled_row_c_and_sigmoid() {
    let (m, k, n) = (19, 33, 64);
    let (a, b, c) = (vals(m * k, 7), vals(n * k, 8), vals(n, 9));
    let model = Model::new(13)
        .input("a", F32, &[m as i64, k as i64])
        .init(tensor_f32("b", &[n as i64, k as i64], &b))
        .init(tensor_f32("c", &[1, n as i64], &c))
        .op(
            "Gemm",
            &["a", "b", "c"],
            &["g"],
            vec![attr_i("transB", 1), attr_f("beta", 0.5)],
        )
        .op("Sigmoid", &["g"], &["y"], vec![])
        .output("y", F32, &[m as i64, n as i64]);
    let want = reference(&a, &b, (m, k, n), true, |_, j| 0.5 * c[j], sigmoid);
    for threads in [1, 2] {
        let got = run(&model, f32_tensor(vec![m, k], &a), threads);
        assert_close(&format!("threads {threads}"), &got[0], &want);
    }
}

#[test]
fn gemm_forms_that_keep_the_host_gemm() {
    // A per-row C ([m, 1]), and a single row: both still run, on the host GEMM.
    let (m, k, n) = (12, 16, 32);
    let (a, b, c) = (vals(m * k, 10), vals(k * n, 11), vals(m, 12));
    let model = Model::new(13)
        .input("a", F32, &[m as i64, k as i64])
        .init(tensor_f32("b", &[k as i64, n as i64], &b))
        .init(tensor_f32("c", &[m as i64, 1], &c))
        .op("Gemm", &["a", "b", "c"], &["y"], vec![])
        .output("y", F32, &[m as i64, n as i64]);
    let want = reference(&a, &b, (m, k, n), false, |i, _| c[i], |v| v);
    let got = run(&model, f32_tensor(vec![m, k], &a), 1);
    assert_close("per-row C", &got[0], &want);

    let model = Model::new(13)
        .input("a", F32, &[1, k as i64])
        .init(tensor_f32("b", &[k as i64, n as i64], &b))
        .op("MatMul", &["a", "b"], &["y"], vec![])
        .output("y", F32, &[1, n as i64]);
    let want = reference(&a[..k], &b, (1, k, n), false, |_, _| 0.0, |v| v);
    let got = run(&model, f32_tensor(vec![1, k], &a[..k]), 1);
    assert_close("one row", &got[0], &want);
}
