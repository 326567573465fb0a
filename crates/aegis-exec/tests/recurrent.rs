//! RNN, GRU and LSTM against onnxruntime on what the ONNX node tests leave out (fixtures from
//! `xtask/scripts/gen_rnn_fixtures.py`: reverse and bidirectional directions, sequence lengths
//! with initial states, GRU's linear_before_reset, clip, peepholes, input_forget, activation
//! lists with alphas), and the batch-first layout against the sequence-first one (onnxruntime
//! rejects that layout, so it cannot be the reference).

use std::sync::Arc;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::kernels::{
    rnn, RnnActivation, RnnCell, RnnDirection, RnnInputs, RnnOutputs, RnnSpec,
};
use aegis_exec::{ExecOptions, ExecutionGraph, Executor, LoadOptions, PreparedModel};
use aegis_memory::DeviceMemoryPool;

mod fixture_dirs;
use fixture_dirs::{fixtures, numbered};

#[test]
fn recurrent_layers_match_onnxruntime() {
    let cases = fixtures("rnn");
    assert_eq!(cases.len(), 9, "{cases:?}");
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 24);
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let g = ExecutionGraph::load(dir.join("model.onnx"), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let model = PreparedModel::prepare(Arc::new(g), &pool, &ExecOptions::default()).unwrap();
        let outs = Executor::run(&model, &numbered(&dir, "input"), &[&stream])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = numbered(&dir, "output");
        assert_eq!(outs.len(), want.len(), "{name}");
        for (k, (o, w)) in outs.iter().zip(&want).enumerate() {
            assert_eq!(o.shape, w.shape, "{name} output {k}");
            for (a, b) in o.to_f32().unwrap().iter().zip(w.to_f32().unwrap()) {
                assert!(
                    (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                    "{name} output {k}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn batch_first_layout_is_the_sequence_first_result_transposed() {
    let (seq, batch, input, hidden, dirs) = (4, 3, 2, 3, 2);
    let data = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 29 % 23) as f32 - 11.0) / 15.0)
            .collect()
    };
    let x = data(seq * batch * input, 1);
    let w = data(dirs * 4 * hidden * input, 2);
    let r = data(dirs * 4 * hidden * hidden, 3);
    let b = data(dirs * 8 * hidden, 4);
    let h0 = data(dirs * batch * hidden, 5);
    let lens = [4, 2, 3];
    let spec = |batch_first| RnnSpec {
        cell: RnnCell::Lstm {
            input_forget: false,
        },
        hidden,
        direction: RnnDirection::Bidirectional,
        activations: [
            RnnActivation::Sigmoid,
            RnnActivation::Tanh,
            RnnActivation::Tanh,
        ]
        .repeat(2),
        clip: None,
        batch_first,
    };
    // Sequence-first: X [seq, batch, input], states [dirs, batch, hidden].
    let (mut y, mut yh, mut yc) = (
        vec![0.0; seq * dirs * batch * hidden],
        vec![0.0; dirs * batch * hidden],
        vec![0.0; dirs * batch * hidden],
    );
    let inputs = RnnInputs {
        x: &x,
        x_shape: &[seq, batch, input],
        w: &w,
        r: &r,
        b: Some(&b),
        seq_lens: Some(&lens),
        initial_h: Some(&h0),
        initial_c: Some(&h0),
        p: None,
    };
    let outs = RnnOutputs {
        y: Some(&mut y),
        y_h: Some(&mut yh),
        y_c: Some(&mut yc),
    };
    rnn(&spec(false), &inputs, outs, 1).unwrap();
    // Batch-first copies of X and the initial states.
    let mut xb = vec![0.0; x.len()];
    for t in 0..seq {
        for bi in 0..batch {
            let (src, dst) = ((t * batch + bi) * input, (bi * seq + t) * input);
            xb[dst..dst + input].copy_from_slice(&x[src..src + input]);
        }
    }
    let swap_states = |s: &[f32]| {
        let mut o = vec![0.0; s.len()];
        for d in 0..dirs {
            for bi in 0..batch {
                let (src, dst) = ((d * batch + bi) * hidden, (bi * dirs + d) * hidden);
                o[dst..dst + hidden].copy_from_slice(&s[src..src + hidden]);
            }
        }
        o
    };
    let h0b = swap_states(&h0);
    let (mut y2, mut yh2, mut yc2) = (vec![0.0; y.len()], vec![0.0; yh.len()], vec![0.0; yc.len()]);
    let inputs = RnnInputs {
        x: &xb,
        x_shape: &[batch, seq, input],
        initial_h: Some(&h0b),
        initial_c: Some(&h0b),
        ..inputs
    };
    let outs = RnnOutputs {
        y: Some(&mut y2),
        y_h: Some(&mut yh2),
        y_c: Some(&mut yc2),
    };
    rnn(&spec(true), &inputs, outs, 2).unwrap();
    assert_eq!(yh2, swap_states(&yh));
    assert_eq!(yc2, swap_states(&yc));
    for t in 0..seq {
        for d in 0..dirs {
            for bi in 0..batch {
                let a = ((t * dirs + d) * batch + bi) * hidden;
                let c = ((bi * seq + t) * dirs + d) * hidden;
                assert_eq!(
                    y2[c..c + hidden],
                    y[a..a + hidden],
                    "t {t} dir {d} batch {bi}"
                );
            }
        }
    }
    // Steps past a sequence's length are zeros; a length beyond the sequence is an error.
    let past = ((3 * dirs) * batch + 1) * hidden;
    assert!(y[past..past + hidden].iter().all(|&v| v == 0.0));
    let bad = RnnInputs {
        seq_lens: Some(&[5, 1, 1]),
        ..inputs
    };
    let outs = RnnOutputs {
        y: None,
        y_h: None,
        y_c: None,
    };
    assert!(rnn(&spec(true), &bad, outs, 1).is_err());
}
