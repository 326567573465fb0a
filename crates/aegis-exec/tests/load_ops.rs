//! Operator-level loading: attribute/input forms per opset, auto_pad resolution, constant
//! folding, Identity/Dropout removal, BatchNormalization folding, and the in-place hints.

#[path = "malformed/builder.rs"]
mod builder;

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::graph::{CoordinateTransform, NearestMode, ResizeMode};
use aegis_exec::{
    ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, Op, PreparedModel, TensorData,
    TensorKind,
};
use aegis_memory::DeviceMemoryPool;
use builder::*;
use std::sync::Arc;

fn load(m: &Model) -> ExecutionGraph {
    ExecutionGraph::from_bytes(&m.bytes(), "ops", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn only_op(g: &ExecutionGraph) -> &Op {
    assert_eq!(g.operators().len(), 1, "{:?}", g.operators());
    &g.operators()[0].op
}

fn out_shape(g: &ExecutionGraph) -> Vec<usize> {
    g.tensor(g.outputs()[0]).shape.clone()
}

#[test]
fn conv_same_upper_pads_are_resolved() {
    let m = Model::new(11)
        .input("x", F32, &[1, 3, 7, 7])
        .init(tensor_f32("w", &[8, 3, 3, 3], &[0.5; 216]))
        .op(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![
                attr_s("auto_pad", "SAME_UPPER"),
                attr_ints("strides", &[2, 2]),
            ],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 8, 4, 4]);
    // out 4, stride 2, kernel 3: need (4-1)*2+3 = 9, total pad 2 -> 1 begin, 1 end.
    match only_op(&g) {
        Op::Conv {
            pads,
            kernel_shape,
            strides,
            dilations,
            group,
        } => {
            assert_eq!(pads, &vec![1, 1, 1, 1]);
            assert_eq!(kernel_shape, &vec![3, 3]);
            assert_eq!(strides, &vec![2, 2]);
            assert_eq!(dilations, &vec![1, 1]);
            assert_eq!(*group, 1);
        }
        op => panic!("{op:?}"),
    }
}

#[test]
fn conv_same_lower_puts_the_odd_pad_first() {
    let m = Model::new(11)
        .input("x", F32, &[1, 1, 6, 6])
        .init(tensor_f32("w", &[1, 1, 2, 2], &[1.0; 4]))
        .op(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![attr_s("auto_pad", "SAME_LOWER")],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 1, 6, 6]);
    match only_op(&g) {
        Op::Conv { pads, .. } => assert_eq!(pads, &vec![1, 1, 0, 0]),
        op => panic!("{op:?}"),
    }
}

#[test]
fn pool_ceil_mode_and_dilations() {
    let m = Model::new(12)
        .input("x", F32, &[1, 2, 6, 6])
        .op(
            "MaxPool",
            &["x"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_i("ceil_mode", 1),
            ],
        )
        .output_any("y", F32);
    // floor: (6-3)/2+1 = 2; ceil: ceil(3/2)+1 = 3, last window starts at 4 < 6: kept.
    assert_eq!(out_shape(&load(&m)), vec![1, 2, 3, 3]);
    let m = Model::new(7)
        .input("x", F32, &[1, 2, 5, 5])
        .op(
            "AveragePool",
            &["x"],
            &["y"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_i("count_include_pad", 1),
            ],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 2, 6, 6]);
    assert!(matches!(
        only_op(&g),
        Op::AveragePool {
            count_include_pad: true,
            ceil_mode: false,
            ..
        }
    ));
}

#[test]
fn clip_takes_attributes_before_opset_11_and_inputs_after() {
    let m = Model::new(7)
        .input("x", F32, &[4])
        .op(
            "Clip",
            &["x"],
            &["y"],
            vec![attr_f("min", 0.0), attr_f("max", 6.0)],
        )
        .output_any("y", F32);
    assert_eq!(only_op(&load(&m)), &Op::Clip { min: 0.0, max: 6.0 });
    let m = Model::new(13)
        .input("x", F32, &[4])
        .init(tensor_f32("lo", &[], &[-1.0]))
        .op("Clip", &["x", "lo", ""], &["y"], vec![])
        .output_any("y", F32);
    assert_eq!(
        only_op(&load(&m)),
        &Op::Clip {
            min: -1.0,
            max: f32::INFINITY
        }
    );
}

/// Runs `g` on `inputs` (host backend, one stream).
fn run_any(g: &Arc<ExecutionGraph>, inputs: &[HostTensor]) -> Vec<HostTensor> {
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 20);
    let model = PreparedModel::prepare(Arc::clone(g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    Executor::run(&model, inputs, &[&stream]).unwrap()
}

fn i64s_of(t: &HostTensor) -> Vec<i64> {
    t.data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn integer_clip_and_bounds_computed_at_run_time() {
    // Integer Clip (opset 12+): bounds read at run time, an absent one does not clamp, and
    // `min > max` gives `max` everywhere (the spec's `Min(max, Max(x, min))`).
    let x = [-9i64, -1, 0, 3, 7, i64::MAX];
    let clip_i64 = |lo: Option<i64>, hi: Option<i64>| {
        let mut m = Model::new(13).input("x", I64, &[6]);
        let mut ins = vec!["x".to_string()];
        for (name, b) in [("lo", lo), ("hi", hi)] {
            match b {
                Some(v) => {
                    m = m.init(tensor_i64(name, &[], &[v]));
                    ins.push(name.into());
                }
                None => ins.push(String::new()),
            }
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        let g = Arc::new(load(
            &m.op("Clip", &ins, &["y"], vec![]).output_any("y", I64),
        ));
        assert_eq!(
            only_op(&g),
            &Op::ClipBounds {
                min: lo.is_some(),
                max: hi.is_some()
            }
        );
        let input = HostTensor::from_data(vec![6], &TensorData::I64(x.to_vec()));
        i64s_of(&run_any(&g, &[input])[0])
    };
    assert_eq!(clip_i64(Some(-1), Some(5)), vec![-1, -1, 0, 3, 5, 5]);
    assert_eq!(clip_i64(Some(0), None), vec![0, 0, 0, 3, 7, i64::MAX]);
    assert_eq!(clip_i64(None, Some(2)), vec![-9, -1, 0, 2, 2, 2]);
    assert_eq!(clip_i64(Some(4), Some(1)), vec![1; 6]);

    // Float bounds computed by the graph (here a graph input): read at run time too.
    let m = Model::new(13)
        .input("x", F32, &[5])
        .input("hi", F32, &[])
        .op("Clip", &["x", "", "hi"], &["y"], vec![])
        .output_any("y", F32);
    let g = Arc::new(load(&m));
    assert_eq!(
        only_op(&g),
        &Op::ClipBounds {
            min: false,
            max: true
        }
    );
    let x = HostTensor::from_f32(vec![5], &[-3.0, 0.5, 2.0, f32::NAN, 9.0]).unwrap();
    let hi = HostTensor::from_f32(vec![], &[1.5]).unwrap();
    let y = run_any(&g, &[x, hi])[0].to_f32().unwrap();
    assert_eq!(&y[..3], &[-3.0, 0.5, 1.5]);
    assert!(y[3].is_nan(), "NaN passes through Clip: {y:?}");
    assert_eq!(y[4], 1.5);

    // A bound that is not a scalar is a typed load error naming the input.
    let m = Model::new(13)
        .input("x", I64, &[4])
        .init(tensor_i64("lo", &[2], &[0, 1]))
        .op("Clip", &["x", "lo"], &["y"], vec![])
        .output_any("y", I64);
    let err = ExecutionGraph::from_bytes(&m.bytes(), "ops", &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("input 1 must be a scalar"), "{err}");
}

#[test]
fn max_pool_indices_and_max_unpool() {
    // Channel 0 has one maximum per window; channel 1 is flat, so the first tap in window
    // order wins every tie. Indices are flat into x, plane offset included (9 per channel).
    let x = [1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]
        .into_iter()
        .chain([2.0; 9])
        .collect::<Vec<f32>>();
    for (order, want_idx) in [
        (0, [1, 1, 3, 5, 9, 10, 12, 13]),
        (1, [3, 3, 1, 7, 9, 12, 10, 13]),
    ] {
        let m = Model::new(13)
            .input("x", F32, &[1, 2, 3, 3])
            .op(
                "MaxPool",
                &["x"],
                &["y", "i"],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_i("storage_order", order),
                ],
            )
            .output_any("y", F32)
            .output_any("i", I64);
        let g = Arc::new(load(&m));
        assert!(
            matches!(only_op(&g), Op::MaxPoolIndices { column_major, .. } if *column_major == (order == 1))
        );
        let outs = run_any(&g, &[HostTensor::from_f32(vec![1, 2, 3, 3], &x).unwrap()]);
        assert_eq!(
            outs[0].to_f32().unwrap(),
            [9.0, 9.0, 8.0, 7.0, 2.0, 2.0, 2.0, 2.0]
        );
        assert_eq!(i64s_of(&outs[1]), want_idx, "storage_order {order}");
    }

    // SegNet's pattern: MaxPool 2x2/2 with indices, then MaxUnpool back to the input's shape
    // (the default size and an explicit output_shape agree here): the maxima in place, zeros
    // elsewhere. A 5x5 input pooled to 2x2 needs the output_shape to get back to 5x5.
    let x: Vec<f32> = (0..25).map(|v| ((v * 7) % 25) as f32).collect();
    for (hw, shape_input) in [(4usize, false), (4, true), (5, true)] {
        let n = hw * hw;
        let mut m = Model::new(11).input("x", F32, &[1, 1, hw as i64, hw as i64]);
        let mut unpool_in = vec!["y", "i"];
        if shape_input {
            m = m.init(tensor_i64("os", &[4], &[1, 1, hw as i64, hw as i64]));
            unpool_in.push("os");
        }
        let pool_attrs = || {
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ]
        };
        let m = m
            .op("MaxPool", &["x"], &["y", "i"], pool_attrs())
            .op("MaxUnpool", &unpool_in, &["z"], pool_attrs())
            .output_any("z", F32);
        let g = Arc::new(load(&m));
        assert_eq!(out_shape(&g), vec![1, 1, hw, hw]);
        let xs = &x[..n];
        let z = run_any(&g, &[HostTensor::from_f32(vec![1, 1, hw, hw], xs).unwrap()])[0]
            .to_f32()
            .unwrap();
        let mut want = vec![0.0; n];
        for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let taps =
                [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(dy, dx)| (2 * oy + dy) * hw + 2 * ox + dx);
            let best = taps
                .into_iter()
                .fold(taps[0], |b, t| if xs[t] > xs[b] { t } else { b });
            want[best] = xs[best];
        }
        assert_eq!(z, want, "{hw}x{hw}, output_shape {shape_input}");
    }

    // An index outside the output is a typed run-time error, not a panic.
    let m = Model::new(11)
        .input("v", F32, &[1, 1, 1, 2])
        .input("i", I64, &[1, 1, 1, 2])
        .op(
            "MaxUnpool",
            &["v", "i"],
            &["z"],
            vec![attr_ints("kernel_shape", &[1, 2])],
        )
        .output_any("z", F32);
    let g = Arc::new(load(&m));
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 20);
    let model = PreparedModel::prepare(Arc::clone(&g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let v = HostTensor::from_f32(vec![1, 1, 1, 2], &[1.0, 2.0]).unwrap();
    let i = HostTensor::from_data(vec![1, 1, 1, 2], &TensorData::I64(vec![0, 7]));
    let err = Executor::run(&model, &[v, i], &[&stream])
        .unwrap_err()
        .to_string();
    assert!(err.contains("index 7 out of range"), "{err}");
}

#[test]
fn window_functions_fold_to_constants() {
    let window = |op: &str, size: i64, periodic: i64| -> Vec<f32> {
        let m = Model::new(17)
            .init(tensor_i64("n", &[], &[size]))
            .op(op, &["n"], &["w"], vec![attr_i("periodic", periodic)])
            .output_any("w", F32);
        let g = load(&m);
        assert!(g.operators().is_empty(), "{op} folds at load");
        match g.constant_data(g.outputs()[0]) {
            Some(TensorData::F32(v)) => v.clone(),
            other => panic!("{op}: {other:?}"),
        }
    };
    let close = |got: Vec<f32>, want: &[f32]| {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    };
    close(window("HannWindow", 4, 1), &[0.0, 0.5, 1.0, 0.5]);
    close(window("HannWindow", 5, 0), &[0.0, 0.5, 1.0, 0.5, 0.0]);
    close(window("HammingWindow", 2, 1), &[4.0 / 46.0, 1.0]);
    close(window("BlackmanWindow", 4, 1), &[0.0, 0.34, 1.0, 0.34]);
}

#[test]
fn bitwise_operators_and_shifts() {
    let run_i64 = |op: &str, a: &[i64], b_shape: &[i64], b: &[i64]| {
        let m = Model::new(18)
            .input("a", I64, &[a.len() as i64])
            .init(tensor_i64("b", b_shape, b))
            .op(op, &["a", "b"], &["y"], vec![])
            .output_any("y", I64);
        let g = Arc::new(load(&m));
        let a = HostTensor::from_data(vec![a.len()], &TensorData::I64(a.to_vec()));
        i64s_of(&run_any(&g, &[a])[0])
    };
    let a = [0b1100, -1, 5, i64::MIN];
    assert_eq!(
        run_i64("BitwiseAnd", &a, &[1], &[0b1010]),
        [0b1000, 0b1010, 0, 0]
    );
    assert_eq!(
        run_i64("BitwiseOr", &a, &[1], &[1]),
        [0b1101, -1, 5, i64::MIN | 1]
    );
    assert_eq!(
        run_i64("BitwiseXor", &a, &[4], &[-1, -1, 1, 0]),
        [!0b1100, 0, 4, i64::MIN]
    );

    // BitwiseNot on i8 (two's complement), BitShift on u8: a shift by 8 or more gives 0.
    let m = Model::new(18)
        .input("x", I8, &[3])
        .op("BitwiseNot", &["x"], &["y"], vec![])
        .output_any("y", I8);
    let g = Arc::new(load(&m));
    let y = run_any(
        &g,
        &[HostTensor::from_data(
            vec![3],
            &TensorData::I8(vec![0, -1, 5]),
        )],
    );
    assert_eq!(y[0].data, [-1i8, 0, -6].map(|v| v as u8));
    for (dir, want) in [("LEFT", [4u8, 0, 128, 0]), ("RIGHT", [1, 0, 0, 0])] {
        let m = Model::new(11)
            .input("x", U8, &[4])
            .input("s", U8, &[4])
            .op(
                "BitShift",
                &["x", "s"],
                &["y"],
                vec![attr_s("direction", dir)],
            )
            .output_any("y", U8);
        let g = Arc::new(load(&m));
        let x = HostTensor::from_data(vec![4], &TensorData::U8(vec![2, 0x81, 1, 255]));
        let s = HostTensor::from_data(vec![4], &TensorData::U8(vec![1, 8, 7, 200]));
        assert_eq!(run_any(&g, &[x, s])[0].data, want, "{dir}");
    }
    // From opset 28 BitShift takes signed types: arithmetic right shifts, and a shift by the
    // width or more (or a negative one) leaves the sign fill. Before 28 they are refused.
    let signed = |opset: i64, dir: &str| {
        Model::new(opset)
            .input("x", I8, &[4])
            .input("s", I8, &[4])
            .op(
                "BitShift",
                &["x", "s"],
                &["y"],
                vec![attr_s("direction", dir)],
            )
            .output_any("y", I8)
    };
    for (dir, want) in [("LEFT", [-16i8, 0, -128, 0]), ("RIGHT", [-4, -1, 0, -1])] {
        let g = Arc::new(load(&signed(28, dir)));
        let x = HostTensor::from_data(vec![4], &TensorData::I8(vec![-8, -3, 1, -128]));
        let s = HostTensor::from_data(vec![4], &TensorData::I8(vec![1, 8, 7, -1]));
        assert_eq!(run_any(&g, &[x, s])[0].data, want.map(|v| v as u8), "{dir}");
    }
    let err =
        ExecutionGraph::from_bytes(&signed(22, "LEFT").bytes(), "ops", &LoadOptions::default())
            .unwrap_err()
            .to_string();
    assert!(err.contains("i8"), "{err}");
    // BitShift takes unsigned types only; a missing direction is a typed error.
    let m = Model::new(11)
        .input("x", U8, &[2])
        .input("s", U8, &[2])
        .op("BitShift", &["x", "s"], &["y"], vec![])
        .output_any("y", U8);
    let err = ExecutionGraph::from_bytes(&m.bytes(), "ops", &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("direction"), "{err}");
}

#[test]
fn split_squeeze_unsqueeze_reduce_axes_follow_the_opset() {
    // Opset 11: attributes.
    let m = Model::new(11)
        .input("x", F32, &[2, 6])
        .op(
            "Split",
            &["x"],
            &["a", "b"],
            vec![attr_i("axis", 1), attr_ints("split", &[2, 4])],
        )
        .op("Unsqueeze", &["a"], &["u"], vec![attr_ints("axes", &[0])])
        .op(
            "ReduceMean",
            &["b"],
            &["r"],
            vec![attr_ints("axes", &[-1]), attr_i("keepdims", 0)],
        )
        .output_any("u", F32)
        .output_any("r", F32);
    let g = load(&m);
    assert_eq!(g.tensor(g.outputs()[0]).shape, vec![1, 2, 2]);
    assert_eq!(g.tensor(g.outputs()[1]).shape, vec![2]);
    // Opset 18: inputs; Split with num_outputs uneven chunks.
    let m = Model::new(18)
        .input("x", F32, &[2, 7])
        .init(tensor_i64("ax", &[1], &[1]))
        .op(
            "Split",
            &["x"],
            &["a", "b", "c"],
            vec![attr_i("axis", 1), attr_i("num_outputs", 3)],
        )
        .op("ReduceMean", &["a", "ax"], &["r"], vec![])
        .op("Unsqueeze", &["c", "ax"], &["u"], vec![])
        .op("Squeeze", &["u", "ax"], &["s"], vec![])
        .output_any("r", F32)
        .output_any("s", F32)
        .output_any("b", F32);
    let g = load(&m);
    let shapes: Vec<_> = g
        .outputs()
        .iter()
        .map(|&o| g.tensor(o).shape.clone())
        .collect();
    assert_eq!(shapes, vec![vec![2, 1], vec![2, 1], vec![2, 3]]);
    let split = g
        .operators()
        .iter()
        .find(|n| n.op.onnx_name() == "Split")
        .unwrap();
    assert_eq!(
        split.op,
        Op::Split {
            axis: 1,
            splits: vec![3, 3, 1]
        }
    );
}

#[test]
fn slice_attribute_and_input_forms_resolve_to_per_axis_starts() {
    let m = Model::new(9)
        .input("x", F32, &[4, 10])
        .op(
            "Slice",
            &["x"],
            &["y"],
            vec![
                attr_ints("starts", &[1, -3]),
                attr_ints("ends", &[1000, -1]),
            ],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![3, 2]);
    assert_eq!(
        only_op(&g),
        &Op::Slice {
            starts: vec![1, 7],
            steps: vec![1, 1]
        }
    );
    // Negative step from the end, opset 13 inputs.
    let m = Model::new(13)
        .input("x", F32, &[4, 10])
        .init(tensor_i64("s", &[1], &[-1]))
        .init(tensor_i64("e", &[1], &[i64::MIN]))
        .init(tensor_i64("a", &[1], &[1]))
        .init(tensor_i64("st", &[1], &[-3]))
        .op("Slice", &["x", "s", "e", "a", "st"], &["y"], vec![])
        .output_any("y", F32);
    let g = load(&m);
    // indices 9, 6, 3, 0
    assert_eq!(out_shape(&g), vec![4, 4]);
    assert_eq!(
        only_op(&g),
        &Op::Slice {
            starts: vec![0, 9],
            steps: vec![1, -3]
        }
    );
}

#[test]
fn pad_attribute_and_input_forms() {
    let m = Model::new(7)
        .input("x", F32, &[1, 2, 3])
        .op(
            "Pad",
            &["x"],
            &["y"],
            vec![
                attr_ints("pads", &[0, 1, 2, 0, 1, -1]),
                attr_f("value", 1.5),
            ],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 4, 4]);
    let m = Model::new(13)
        .input("x", F32, &[1, 2, 3])
        .init(tensor_i64("p", &[6], &[0, 0, 1, 0, 0, 1]))
        .op("Pad", &["x", "p"], &["y"], vec![attr_s("mode", "reflect")])
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 2, 5]);
    assert!(matches!(
        only_op(&g),
        Op::Pad {
            mode: aegis_exec::graph::PadMode::Reflect,
            ..
        }
    ));
}

#[test]
fn resize_scales_sizes_and_opset_10_semantics() {
    let m = Model::new(10)
        .input("x", F32, &[1, 1, 2, 3])
        .init(tensor_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0]))
        .op("Resize", &["x", "s"], &["y"], vec![])
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 1, 4, 6]);
    match only_op(&g) {
        Op::Resize {
            mode,
            coordinate_transform,
            nearest_mode,
            ..
        } => {
            assert_eq!(*mode, ResizeMode::Nearest);
            assert_eq!(*coordinate_transform, CoordinateTransform::Asymmetric);
            assert_eq!(*nearest_mode, NearestMode::Floor);
        }
        op => panic!("{op:?}"),
    }
    let m = Model::new(13)
        .input("x", F32, &[1, 1, 2, 3])
        .init(tensor_i64("sz", &[4], &[1, 1, 5, 9]))
        .op(
            "Resize",
            &["x", "", "", "sz"],
            &["y"],
            vec![
                attr_s("mode", "linear"),
                attr_s("coordinate_transformation_mode", "align_corners"),
            ],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 1, 5, 9]);
    match only_op(&g) {
        Op::Resize {
            mode,
            scales,
            coordinate_transform,
            ..
        } => {
            assert_eq!(*mode, ResizeMode::Linear);
            assert_eq!(*coordinate_transform, CoordinateTransform::AlignCorners);
            assert_eq!(scales, &vec![1.0, 1.0, 2.5, 3.0]);
        }
        op => panic!("{op:?}"),
    }
}

#[test]
fn softmax_semantics_flag_depends_on_the_opset() {
    for (opset, axis, flatten) in [(11, 1, true), (13, 2, false)] {
        let m = Model::new(opset)
            .input("x", F32, &[2, 3, 4])
            .op("Softmax", &["x"], &["y"], vec![])
            .output_any("y", F32);
        assert_eq!(
            only_op(&load(&m)),
            &Op::Softmax {
                axis,
                flatten_2d: flatten
            }
        );
    }
}

/// The classic exporter pattern: Reshape(x, Concat(Gather(Shape(x), 0), [-1])) — all folded.
#[test]
fn shape_arithmetic_is_folded_to_a_static_reshape() {
    let m = Model::new(13)
        .input("x", F32, &[2, 3, 4])
        .init(tensor_i64("zero", &[], &[0]))
        .init(tensor_i64("minus1", &[1], &[-1]))
        .init(tensor_i64("ax0", &[1], &[0]))
        .op("Shape", &["x"], &["shape"], vec![])
        .op(
            "Gather",
            &["shape", "zero"],
            &["n"],
            vec![attr_i("axis", 0)],
        )
        .op("Unsqueeze", &["n", "ax0"], &["n1"], vec![])
        .op(
            "Concat",
            &["n1", "minus1"],
            &["target"],
            vec![attr_i("axis", 0)],
        )
        .op("Cast", &["target"], &["target_f"], vec![attr_i("to", 1)])
        .op("Mul", &["target_f", "target_f"], &["sq"], vec![])
        .op("Cast", &["sq"], &["sq_i"], vec![attr_i("to", 7)])
        .op("Reshape", &["x", "target"], &["y"], vec![])
        .output_any("y", F32)
        .output_any("sq_i", I64);
    let g = load(&m);
    assert_eq!(g.operators().len(), 1, "only the Reshape remains");
    assert_eq!(only_op(&g), &Op::Reshape { shape: vec![2, 12] });
    // The folded side output is a constant graph output with the computed value.
    let sq = g.outputs()[1];
    assert_eq!(g.tensor(sq).kind, TensorKind::Constant);
    assert_eq!(g.constant_data(sq), Some(&TensorData::I64(vec![4, 1])));
}

#[test]
fn constant_of_shape_range_where_expand_fold() {
    let m = Model::new(13)
        .input("x", F32, &[3, 4])
        .init(tensor_i64("len", &[1], &[4]))
        .init(tensor_i64("start", &[], &[0]))
        .init(tensor_i64("limit", &[], &[4]))
        .init(tensor_i64("delta", &[], &[1]))
        .init(tensor_i64("two", &[], &[2]))
        .op(
            "ConstantOfShape",
            &["len"],
            &["ones"],
            vec![attr_t("value", tensor_f32("", &[1], &[1.0]))],
        )
        .op("Range", &["start", "limit", "delta"], &["r"], vec![])
        .op("Mod", &["r", "two"], &["odd"], vec![])
        .op("Equal", &["odd", "start"], &["even"], vec![])
        .op("Cast", &["r"], &["rf"], vec![attr_i("to", 1)])
        .op("Where", &["even", "rf", "ones"], &["w"], vec![])
        .op("Mul", &["x", "w"], &["y"], vec![])
        .output_any("y", F32);
    let g = load(&m);
    let node = &g.operators()[0];
    assert_eq!(g.operators().len(), 1);
    assert_eq!(node.op, Op::Mul);
    let w = node.inputs[1];
    // r = [0,1,2,3]; even -> r, odd -> 1
    assert_eq!(
        g.constant_data(w),
        Some(&TensorData::F32(vec![0.0, 1.0, 2.0, 1.0]))
    );
}

#[test]
fn identity_and_dropout_are_removed() {
    let m = Model::new(11)
        .input("x", F32, &[4])
        .op("Identity", &["x"], &["a"], vec![])
        .op("Relu", &["a"], &["b"], vec![])
        .op("Dropout", &["b"], &["c"], vec![attr_f("ratio", 0.5)])
        .op("Identity", &["c"], &["y"], vec![])
        .output("y", F32, &[4]);
    let g = load(&m);
    assert_eq!(only_op(&g), &Op::Relu);
    let y = g.outputs()[0];
    assert_eq!(g.tensor(y).name, "y", "the output keeps the model's name");
    assert_eq!(g.operators()[0].inputs, vec![g.inputs()[0]]);
}

#[test]
fn batch_norm_is_folded_into_the_conv_numerically() {
    let w = [1.0f32, 2.0]; // shape [2, 1, 1, 1]
    let m = Model::new(9)
        .input("x", F32, &[1, 1, 2, 2])
        .init(tensor_f32("w", &[2, 1, 1, 1], &w))
        .init(tensor_f32("b", &[2], &[0.5, -0.5]))
        .init(tensor_f32("scale", &[2], &[2.0, 3.0]))
        .init(tensor_f32("shift", &[2], &[0.1, 0.2]))
        .init(tensor_f32("mean", &[2], &[1.0, -1.0]))
        .init(tensor_f32("var", &[2], &[4.0, 9.0]))
        .op("Conv", &["x", "w", "b"], &["c"], vec![])
        .op(
            "BatchNormalization",
            &["c", "scale", "shift", "mean", "var"],
            &["y"],
            vec![attr_f("epsilon", 0.0)],
        )
        .output("y", F32, &[1, 2, 2, 2]);
    let g = load(&m);
    let conv = &g.operators()[0];
    assert_eq!(g.operators().len(), 1);
    assert!(matches!(conv.op, Op::Conv { .. }));
    assert_eq!(conv.outputs, g.outputs().to_vec());
    let s = [2.0 / 2.0, 3.0 / 3.0];
    let nw = g.constant_data(conv.inputs[1]).unwrap().as_f32().unwrap();
    let nb = g.constant_data(conv.inputs[2]).unwrap().as_f32().unwrap();
    assert_eq!(nw, &[1.0 * s[0], 2.0 * s[1]]);
    assert_eq!(nb, &[(0.5 - 1.0) * s[0] + 0.1, (-0.5 + 1.0) * s[1] + 0.2]);
}

#[test]
fn batch_norm_after_a_shared_conv_output_is_kept() {
    let m = Model::new(9)
        .input("x", F32, &[1, 1, 2, 2])
        .init(tensor_f32("w", &[1, 1, 1, 1], &[1.0]))
        .init(tensor_f32("p", &[1], &[1.0]))
        .op("Conv", &["x", "w"], &["c"], vec![])
        .op(
            "BatchNormalization",
            &["c", "p", "p", "p", "p"],
            &["y"],
            vec![],
        )
        .op("Relu", &["c"], &["z"], vec![])
        .output_any("y", F32)
        .output_any("z", F32);
    let h = load(&m).op_histogram();
    assert_eq!(h.get("BatchNormalization"), Some(&1));
}

#[test]
fn per_channel_mul_and_add_after_a_conv_fold_into_it_numerically() {
    // inception_v2's form of a batch norm: Conv -> Mul (per channel) -> Add (per channel),
    // with the constant on either side and in either broadcast form.
    let m = Model::new(9)
        .input("x", F32, &[1, 1, 2, 2])
        .init(tensor_f32("w", &[2, 1, 1, 1], &[1.0, 2.0]))
        .init(tensor_f32("b", &[2], &[0.5, -0.5]))
        .init(tensor_f32("s", &[1, 2, 1, 1], &[3.0, -2.0]))
        .init(tensor_f32("t", &[2, 1, 1], &[0.25, 4.0]))
        .op("Conv", &["x", "w", "b"], &["c"], vec![])
        .op("Mul", &["s", "c"], &["m"], vec![])
        .op("Add", &["m", "t"], &["y"], vec![])
        .output("y", F32, &[1, 2, 2, 2]);
    let g = load(&m);
    assert_eq!(g.operators().len(), 1, "{:?}", g.op_histogram());
    let conv = &g.operators()[0];
    assert!(matches!(conv.op, Op::Conv { .. }));
    assert_eq!(conv.outputs, g.outputs().to_vec());
    let nw = g.constant_data(conv.inputs[1]).unwrap().as_f32().unwrap();
    let nb = g.constant_data(conv.inputs[2]).unwrap().as_f32().unwrap();
    assert_eq!(nw, &[1.0 * 3.0, 2.0 * -2.0]);
    assert_eq!(nb, &[0.5 * 3.0 + 0.25, -0.5 * -2.0 + 4.0]);
    // The Add kept the Mul's filter (a shift never copies the weights).
    let wname = &g.tensor(conv.inputs[1]).name;
    assert!(wname.ends_with("::scaled_weight"), "{wname}");
}

#[test]
fn a_scalar_scale_folds_and_a_bias_without_conv_bias_is_created() {
    let m = Model::new(9)
        .input("x", F32, &[1, 1, 2, 2])
        .init(tensor_f32("w", &[2, 1, 1, 1], &[1.0, 2.0]))
        .init(tensor_f32("s", &[], &[0.5]))
        .init(tensor_f32("t", &[1, 2, 1, 1], &[1.0, -1.0]))
        .op("Conv", &["x", "w"], &["c"], vec![])
        .op("Mul", &["c", "s"], &["m"], vec![])
        .op("Add", &["t", "m"], &["y"], vec![])
        .output("y", F32, &[1, 2, 2, 2]);
    let g = load(&m);
    assert_eq!(g.operators().len(), 1, "{:?}", g.op_histogram());
    let conv = &g.operators()[0];
    let nw = g.constant_data(conv.inputs[1]).unwrap().as_f32().unwrap();
    let nb = g.constant_data(conv.inputs[2]).unwrap().as_f32().unwrap();
    assert_eq!(nw, &[0.5, 1.0]);
    assert_eq!(nb, &[1.0, -1.0]);
}

#[test]
fn per_channel_mul_and_add_after_a_batch_norm_fold_into_its_scale_and_bias() {
    // densenet's form: a BatchNormalization with no Conv before it, then Mul and Add.
    let m = Model::new(9)
        .input("x", F32, &[1, 2, 2, 2])
        .init(tensor_f32("scale", &[2], &[2.0, 3.0]))
        .init(tensor_f32("shift", &[2], &[0.1, 0.2]))
        .init(tensor_f32("mean", &[2], &[1.0, -1.0]))
        .init(tensor_f32("var", &[2], &[4.0, 9.0]))
        .init(tensor_f32("s", &[2, 1, 1], &[0.5, -1.5]))
        .init(tensor_f32("t", &[2, 1, 1], &[1.0, 2.0]))
        .op(
            "BatchNormalization",
            &["x", "scale", "shift", "mean", "var"],
            &["n"],
            vec![attr_f("epsilon", 0.0)],
        )
        .op("Mul", &["n", "s"], &["m"], vec![])
        .op("Add", &["m", "t"], &["y"], vec![])
        .output("y", F32, &[1, 2, 2, 2]);
    let g = load(&m);
    assert_eq!(g.operators().len(), 1, "{:?}", g.op_histogram());
    let bn = &g.operators()[0];
    assert!(matches!(bn.op, Op::BatchNormalization { .. }));
    assert_eq!(bn.outputs, g.outputs().to_vec());
    let data = |i: usize| g.constant_data(bn.inputs[i]).unwrap().as_f32().unwrap();
    assert_eq!(data(1), &[2.0 * 0.5, 3.0 * -1.5]);
    assert_eq!(data(2), &[0.1 * 0.5 + 1.0, 0.2 * -1.5 + 2.0]);
    assert_eq!(data(3), &[1.0, -1.0]);
    assert_eq!(data(4), &[4.0, 9.0]);
}

#[test]
fn mul_and_add_that_are_not_per_channel_or_not_alone_are_kept() {
    // Along the last axis (numpy right-aligns [2] to W), a runtime operand, and a Conv output
    // with a second reader: none may fold.
    let m = Model::new(9)
        .input("x", F32, &[1, 1, 2, 2])
        .input("r", F32, &[1, 2, 2, 2])
        .init(tensor_f32("w", &[2, 1, 1, 1], &[1.0, 2.0]))
        .init(tensor_f32("v", &[2], &[3.0, 4.0]))
        .op("Conv", &["x", "w"], &["c1"], vec![])
        .op("Mul", &["c1", "v"], &["y1"], vec![])
        .op("Conv", &["x", "w"], &["c2"], vec![])
        .op("Add", &["c2", "r"], &["y2"], vec![])
        .op("Conv", &["x", "w"], &["c3"], vec![])
        .op("Add", &["c3", "v"], &["y3"], vec![])
        .op("Relu", &["c3"], &["z"], vec![])
        .output("y1", F32, &[1, 2, 2, 2])
        .output("y2", F32, &[1, 2, 2, 2])
        .output("y3", F32, &[1, 2, 2, 2])
        .output("z", F32, &[1, 2, 2, 2]);
    let h = load(&m).op_histogram();
    assert_eq!(h.get("Mul"), Some(&1));
    assert_eq!(h.get("Add"), Some(&2));
}

#[test]
fn reshapes_take_their_inputs_storage_and_run_as_no_ops() {
    // a = Relu(x); r = Reshape(a); y = Relu(r): r is a's bytes, so the plan shares them, and
    // the run still gives Relu(x) in the new shape.
    let m = Model::new(13)
        .input("x", F32, &[2, 6])
        .init(tensor_i64("s", &[2], &[3, 4]))
        .op("Relu", &["x"], &["a"], vec![])
        .op("Reshape", &["a", "s"], &["r"], vec![])
        .op("Sigmoid", &["r"], &["y"], vec![])
        .output("y", F32, &[3, 4]);
    let g = Arc::new(load(&m));
    assert_shares(&g, "a", "r");
    assert_eq!(out_shape(&g), vec![3, 4]);
    let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
    let want: Vec<f32> = x
        .iter()
        .map(|&v| 1.0 / (1.0 + (-v.max(0.0)).exp()))
        .collect();
    let got = run_f32(&g, &[(vec![2, 6], x)]);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn batch_norm_with_a_following_relu_runs_as_one_fused_pass() {
    // A BN with no Conv before it (densenet's pre-activation): coefficients are computed at
    // prepare and the Relu runs inside the BN's kernel; the result must match the formula.
    let m = Model::new(9)
        .input("x", F32, &[1, 2, 2, 2])
        .init(tensor_f32("scale", &[2], &[2.0, -3.0]))
        .init(tensor_f32("shift", &[2], &[0.1, 0.2]))
        .init(tensor_f32("mean", &[2], &[1.0, -1.0]))
        .init(tensor_f32("var", &[2], &[4.0, 9.0]))
        .op(
            "BatchNormalization",
            &["x", "scale", "shift", "mean", "var"],
            &["n"],
            vec![attr_f("epsilon", 1e-5)],
        )
        .op("Relu", &["n"], &["y"], vec![])
        .output("y", F32, &[1, 2, 2, 2]);
    let g = Arc::new(load(&m));
    // The BN took the prepared path: its two coefficient vectors (2 channels) are prepared
    // bytes, and no parameter is uploaded as a weight.
    let req = PreparedModel::memory_requirement(&g, &ExecOptions::default()).unwrap();
    assert_eq!(req.prepared_weights_bytes, 2 * 2 * 4);
    assert_eq!(req.weights_bytes, 0);
    // Both signs per channel, so the Relu matters.
    let x = [-3.0f32, 2.0, 0.5, 4.0, -2.0, 1.0, 3.0, -0.5];
    let got = run_f32(&g, &[(vec![1, 2, 2, 2], x.to_vec())]);
    let (scale, shift, mean, var) = ([2.0f32, -3.0], [0.1f32, 0.2], [1.0f32, -1.0], [4.0f32, 9.0]);
    for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
        let c = i / 4;
        let want = ((v - mean[c]) / (var[c] + 1e-5).sqrt() * scale[c] + shift[c]).max(0.0);
        assert!((g - want).abs() <= 1e-5, "element {i}: {g} vs {want}");
    }
    assert_eq!(got.iter().filter(|&&v| v > 0.0).count(), 3, "{got:?}");
}

/// The valid plan of `g` puts tensor `output` on tensor `input`'s storage (a share hint).
fn assert_shares(g: &ExecutionGraph, input: &str, output: &str) {
    let plan = g.plan();
    plan.validate().unwrap();
    let i = g.tensor_by_name(input).unwrap().index();
    let o = g.tensor_by_name(output).unwrap().index();
    assert!(
        plan.shared.iter().any(|h| h.input == i && h.output == o),
        "{:?}",
        plan.shared
    );
    assert_eq!(plan.offset_of(i), plan.offset_of(o));
}

/// Runs a one-output f32 model on the host backend.
fn run_f32(g: &Arc<ExecutionGraph>, inputs: &[(Vec<usize>, Vec<f32>)]) -> Vec<f32> {
    let inputs: Vec<HostTensor> = inputs
        .iter()
        .map(|(shape, data)| HostTensor::from_f32(shape.clone(), data).unwrap())
        .collect();
    run_raw(g, &inputs)[0].to_f32().unwrap()
}

#[rstest::rstest]
#[case::add_of_two_graph_inputs("Add", false)]
#[case::sum_in_place_over_an_intermediate("Sum", true)]
fn add_or_sum_then_relu_runs_fused_with_numpy_broadcasting(
    #[case] op: &str,
    #[case] through_sigmoid: bool,
) {
    // out = Relu(op(a, b)) with b [1, 4] broadcast over a [3, 4]; with `through_sigmoid`
    // a is an intermediate (Sigmoid(x)) read only by the sum, so the plan may run it in place.
    let a_name = if through_sigmoid { "s" } else { "x" };
    let mut m = Model::new(13)
        .input("x", F32, &[3, 4])
        .input("b", F32, &[1, 4]);
    if through_sigmoid {
        m = m.op("Sigmoid", &["x"], &["s"], vec![]);
    }
    let m = m
        .op(op, &[a_name, "b"], &["t"], vec![])
        .op("Relu", &["t"], &["y"], vec![])
        .output("y", F32, &[3, 4]);
    let g = Arc::new(load(&m));
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let b = vec![-0.75f32, 0.25, -2.0, 1.5];
    let got = run_f32(&g, &[(vec![3, 4], x.clone()), (vec![1, 4], b.clone())]);
    for (i, &v) in x.iter().enumerate() {
        let a = if through_sigmoid {
            1.0 / (1.0 + (-v).exp())
        } else {
            v
        };
        let want = (a + b[i % 4]).max(0.0);
        assert!(
            (got[i] - want).abs() <= 1e-6,
            "element {i}: {} vs {want}",
            got[i]
        );
    }
    assert!(
        got.contains(&0.0) && got.iter().any(|&v| v > 0.0),
        "{got:?}"
    );
}

#[test]
fn elementwise_ops_get_in_place_hints_when_they_lower_the_peak() {
    // a = Relu(x); b = Sigmoid(a); c = Add(a, b); y = Relu(c). At the Add, a, b and c are
    // alive (3 buffers) unless c takes b's storage (b dies there, read only by the Add).
    let m = Model::new(13)
        .input("x", F32, &[1024])
        .op("Relu", &["x"], &["a"], vec![])
        .op("Sigmoid", &["a"], &["b"], vec![])
        .op("Add", &["a", "b"], &["c"], vec![])
        .op("Relu", &["c"], &["y"], vec![])
        .output_any("y", F32);
    let g = load(&m);
    assert_shares(&g, "b", "c");
    let plan = g.plan();
    assert_eq!(plan.peak_bytes, 2 * 4096);
    // Never the graph input or output.
    let x = g.inputs()[0].index();
    let y = g.outputs()[0].index();
    assert!(plan.shared.iter().all(|h| h.input != x && h.output != y));
}

#[test]
fn topological_order_follows_file_order_among_ready_nodes_even_if_unsorted() {
    // Nodes listed consumer-first: the loader still orders them.
    let m = Model::new(13)
        .input("x", F32, &[4])
        .op("Relu", &["b"], &["y"], vec![])
        .op("Sigmoid", &["x"], &["a"], vec![])
        .op("Tanh", &["x"], &["c"], vec![])
        .op("Add", &["a", "c"], &["b"], vec![])
        .output_any("y", F32);
    let opts = LoadOptions {
        memory_aware_order: false,
        ..LoadOptions::default()
    };
    let g = ExecutionGraph::from_bytes(&m.bytes(), "ops", &opts).unwrap();
    let names: Vec<&str> = g
        .topological_order()
        .iter()
        .map(|&n| g.node(n).op.onnx_name())
        .collect();
    assert_eq!(names, vec!["Sigmoid", "Tanh", "Add", "Relu"]);
    // NodeIds keep file order.
    assert_eq!(g.operators()[0].op, Op::Relu);
}

#[test]
fn gemm_matmul_layernorm_gelu_shapes() {
    let m = Model::new(20)
        .input("x", F32, &[2, 5, 8])
        .init(tensor_f32("w", &[8, 16], &[0.0; 128]))
        .init(tensor_f32("g", &[16], &[1.0; 16]))
        .init(tensor_f32("a", &[3, 16], &[0.0; 48]))
        .init(tensor_f32("c", &[3], &[0.0; 3]))
        .init(tensor_i64("shp", &[2], &[10, 16]))
        .op("MatMul", &["x", "w"], &["h"], vec![])
        .op("LayerNormalization", &["h", "g"], &["n"], vec![])
        .op(
            "Gelu",
            &["n"],
            &["act"],
            vec![attr_s("approximate", "tanh")],
        )
        .op("Reshape", &["act", "shp"], &["flat"], vec![])
        .op(
            "Gemm",
            &["flat", "a", "c"],
            &["y"],
            vec![attr_i("transB", 1)],
        )
        .output("y", F32, &[10, 3]);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![10, 3]);
    let h = g.op_histogram();
    for op in ["MatMul", "LayerNormalization", "Gelu", "Reshape", "Gemm"] {
        assert_eq!(h.get(op), Some(&1), "{op}");
    }
}

#[test]
fn conv_transpose_output_shape_resolves_pads() {
    let m = Model::new(11)
        .input("x", F32, &[1, 2, 3, 3])
        .init(tensor_f32("w", &[2, 4, 3, 3], &[0.0; 72]))
        .op(
            "ConvTranspose",
            &["x", "w"],
            &["y"],
            vec![
                attr_ints("strides", &[2, 2]),
                attr_ints("output_shape", &[6, 6]),
            ],
        )
        .output_any("y", F32);
    let g = load(&m);
    assert_eq!(out_shape(&g), vec![1, 4, 6, 6]);
    // full = 2*(3-1)+3 = 7; total pad 1 -> begin 1, end 0 (NOTSET puts the odd one first).
    match only_op(&g) {
        Op::ConvTranspose {
            pads,
            output_padding,
            ..
        } => {
            assert_eq!(pads, &vec![1, 1, 0, 0]);
            assert_eq!(output_padding, &vec![0, 0]);
        }
        op => panic!("{op:?}"),
    }
}

/// One minimal runtime model per remaining op: it loads, keeps the op, and infers the shape.
#[test]
fn every_supported_op_loads_as_a_runtime_node() {
    type Case = (&'static str, i64, Model, Vec<usize>);
    let unary = |op: &str, opset: i64, attrs| {
        Model::new(opset)
            .input("x", F32, &[2, 3])
            .op(op, &["x"], &["y"], attrs)
            .output_any("y", F32)
    };
    let binary = |op: &str, dt: i32| {
        Model::new(13)
            .input("a", dt, &[2, 1, 3])
            .input("b", dt, &[4, 1])
            .op(op, &["a", "b"], &["y"], vec![])
            .output_any("y", if op == "Equal" { BOOL } else { dt })
    };
    let cases: Vec<Case> = vec![
        ("Add", 13, binary("Add", F32), vec![2, 4, 3]),
        ("Sub", 13, binary("Sub", F32), vec![2, 4, 3]),
        ("Mul", 13, binary("Mul", I64), vec![2, 4, 3]),
        ("Div", 13, binary("Div", F32), vec![2, 4, 3]),
        ("Pow", 13, binary("Pow", F32), vec![2, 4, 3]),
        ("Equal", 13, binary("Equal", I64), vec![2, 4, 3]),
        (
            "Mod",
            13,
            Model::new(13)
                .input("a", I64, &[3])
                .input("b", I64, &[3])
                .op("Mod", &["a", "b"], &["y"], vec![])
                .output_any("y", I64),
            vec![3],
        ),
        (
            "Where",
            13,
            Model::new(13)
                .input("c", BOOL, &[2, 1])
                .input("a", F32, &[3])
                .input("b", F32, &[1])
                .op("Where", &["c", "a", "b"], &["y"], vec![])
                .output_any("y", F32),
            vec![2, 3],
        ),
        (
            "Sum",
            8,
            Model::new(8)
                .input("a", F32, &[2, 3])
                .input("b", F32, &[3])
                .input("c", F32, &[1])
                .op("Sum", &["a", "b", "c"], &["y"], vec![])
                .output_any("y", F32),
            vec![2, 3],
        ),
        ("Relu", 13, unary("Relu", 13, vec![]), vec![2, 3]),
        ("Sigmoid", 13, unary("Sigmoid", 13, vec![]), vec![2, 3]),
        ("Tanh", 13, unary("Tanh", 13, vec![]), vec![2, 3]),
        ("Erf", 13, unary("Erf", 13, vec![]), vec![2, 3]),
        ("Sqrt", 13, unary("Sqrt", 13, vec![]), vec![2, 3]),
        ("HardSwish", 14, unary("HardSwish", 14, vec![]), vec![2, 3]),
        (
            "HardSigmoid",
            13,
            unary("HardSigmoid", 13, vec![attr_f("alpha", 0.1)]),
            vec![2, 3],
        ),
        (
            "Cast",
            13,
            Model::new(13)
                .input("x", F32, &[2, 3])
                .op("Cast", &["x"], &["y"], vec![attr_i("to", 7)])
                .output_any("y", I64),
            vec![2, 3],
        ),
        ("Transpose", 13, unary("Transpose", 13, vec![]), vec![3, 2]),
        (
            "Flatten",
            13,
            unary("Flatten", 13, vec![attr_i("axis", 0)]),
            vec![1, 6],
        ),
        (
            "Concat",
            13,
            Model::new(13)
                .input("a", F32, &[2, 3])
                .input("b", F32, &[2, 5])
                .op("Concat", &["a", "b"], &["y"], vec![attr_i("axis", -1)])
                .output_any("y", F32),
            vec![2, 8],
        ),
        (
            "Gather",
            13,
            Model::new(13)
                .input("x", F32, &[5, 4])
                .init(tensor_i64("i", &[2, 2], &[0, -1, 4, 2]))
                .op("Gather", &["x", "i"], &["y"], vec![attr_i("axis", 0)])
                .output_any("y", F32),
            vec![2, 2, 4],
        ),
        (
            "Expand",
            13,
            Model::new(13)
                .input("x", F32, &[3, 1])
                .init(tensor_i64("s", &[3], &[2, 1, 4]))
                .op("Expand", &["x", "s"], &["y"], vec![])
                .output_any("y", F32),
            vec![2, 3, 4],
        ),
        (
            "GlobalAveragePool",
            13,
            Model::new(13)
                .input("x", F32, &[1, 3, 5, 5])
                .op("GlobalAveragePool", &["x"], &["y"], vec![])
                .output_any("y", F32),
            vec![1, 3, 1, 1],
        ),
        (
            "LRN",
            13,
            Model::new(13)
                .input("x", F32, &[1, 3, 5, 5])
                .op("LRN", &["x"], &["y"], vec![attr_i("size", 3)])
                .output_any("y", F32),
            vec![1, 3, 5, 5],
        ),
        (
            "BatchNormalization",
            15,
            Model::new(15)
                .input("x", F32, &[1, 2, 3])
                .input("s", F32, &[2])
                .init(tensor_f32("p", &[2], &[1.0, 1.0]))
                .op(
                    "BatchNormalization",
                    &["x", "s", "p", "p", "p"],
                    &["y"],
                    vec![],
                )
                .output_any("y", F32),
            vec![1, 2, 3],
        ),
    ];
    for (op, opset, m, shape) in cases {
        let g = ExecutionGraph::from_bytes(&m.bytes(), op, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{op} (opset {opset}): {e}"));
        assert_eq!(g.operators().len(), 1, "{op}");
        assert_eq!(g.operators()[0].op.onnx_name(), op);
        assert_eq!(out_shape(&g), shape, "{op}");
    }
}

#[test]
fn conv_then_leaky_relu_runs_fused_and_matches_the_two_ops() {
    // 1x1 conv, 2 -> 2 channels, then LeakyRelu(0.1): the activation fuses into the conv.
    let w = [1.0f32, -2.0, 0.5, 1.0];
    let m = Model::new(13)
        .input("x", F32, &[1, 2, 2, 2])
        .init(tensor_f32("w", &[2, 2, 1, 1], &w))
        .init(tensor_f32("b", &[2], &[0.25, -0.5]))
        .op("Conv", &["x", "w", "b"], &["c"], vec![])
        .op("LeakyRelu", &["c"], &["y"], vec![attr_f("alpha", 0.1)])
        // x stays alive past the conv, so y cannot be planned over it (that would forbid
        // fusing: the fused kernel reads x while it writes y).
        .op("Relu", &["x"], &["z"], vec![])
        .output("y", F32, &[1, 2, 2, 2])
        .output("z", F32, &[1, 2, 2, 2]);
    let g = Arc::new(load(&m));
    assert_eq!(g.operators()[1].op, Op::LeakyRelu { alpha: 0.1 });
    let x = [-1.0f32, 2.0, 0.5, -3.0, 1.0, 1.5, -2.0, 0.25];
    let got = run_f32(&g, &[(vec![1, 2, 2, 2], x.to_vec())]);
    for p in 0..4 {
        for co in 0..2 {
            let c = w[co * 2] * x[p] + w[co * 2 + 1] * x[4 + p] + [0.25, -0.5][co];
            let want = if c < 0.0 { 0.1 * c } else { c };
            let g = got[co * 4 + p];
            assert!(
                (g - want).abs() <= 1e-6,
                "channel {co} pos {p}: {g} vs {want}"
            );
        }
    }
    assert!(got.iter().any(|&v| v < 0.0) && got.iter().any(|&v| v > 0.0));
    // One kernel runs: the profile lists the conv alone.
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 20);
    let model = PreparedModel::prepare(Arc::clone(&g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let input = HostTensor::from_f32(vec![1, 2, 2, 2], &x).unwrap();
    let times = Executor::profile(&model, &[input], &stream, 2).unwrap();
    let ops: Vec<&str> = times.iter().map(|t| t.op).collect();
    assert_eq!(ops, ["Conv", "Relu"], "{times:?}");
}

#[test]
fn upsample_loads_as_an_asymmetric_floor_resize() {
    for opset in [7, 9] {
        let m = if opset == 7 {
            Model::new(7).input("x", F32, &[1, 1, 2, 2]).op(
                "Upsample",
                &["x"],
                &["y"],
                vec![attr_floats("scales", &[1.0, 1.0, 2.0, 3.0])],
            )
        } else {
            Model::new(9)
                .input("x", F32, &[1, 1, 2, 2])
                .init(tensor_f32("s", &[4], &[1.0, 1.0, 2.0, 3.0]))
                .op("Upsample", &["x", "s"], &["y"], vec![])
        }
        .output_any("y", F32);
        let g = Arc::new(load(&m));
        assert_eq!(out_shape(&g), vec![1, 1, 4, 6]);
        match only_op(&g) {
            Op::Resize {
                mode,
                coordinate_transform,
                nearest_mode,
                ..
            } => {
                assert_eq!(*mode, ResizeMode::Nearest);
                assert_eq!(*coordinate_transform, CoordinateTransform::Asymmetric);
                assert_eq!(*nearest_mode, NearestMode::Floor);
            }
            op => panic!("{op:?}"),
        }
        let got = run_f32(&g, &[(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0])]);
        let row0 = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0];
        let row1 = [3.0, 3.0, 3.0, 4.0, 4.0, 4.0];
        let want: Vec<f32> = [row0, row0, row1, row1].concat();
        assert_eq!(got, want, "opset {opset}");
    }
}

#[test]
fn new_ops_validate_their_inputs_with_typed_errors() {
    let bad = [
        // PRelu slope that does not broadcast to x.
        Model::new(13)
            .input("x", F32, &[1, 3, 2, 2])
            .input("s", F32, &[3])
            .op("PRelu", &["x", "s"], &["y"], vec![])
            .output_any("y", F32),
        // Tile with repeats of the wrong rank.
        Model::new(13)
            .input("x", F32, &[2, 3])
            .init(tensor_i64("r", &[1], &[2]))
            .op("Tile", &["x", "r"], &["y"], vec![])
            .output_any("y", F32),
        // DepthToSpace whose channels the block does not divide.
        Model::new(13)
            .input("x", F32, &[1, 6, 2, 2])
            .op("DepthToSpace", &["x"], &["y"], vec![attr_i("blocksize", 2)])
            .output_any("y", F32),
        // ArgMax over an axis out of range.
        Model::new(13)
            .input("x", F32, &[2, 3])
            .op("ArgMax", &["x"], &["y"], vec![attr_i("axis", 2)])
            .output_any("y", I64),
        // Logical And on floats.
        Model::new(13)
            .input("a", F32, &[2])
            .input("b", F32, &[2])
            .op("And", &["a", "b"], &["y"], vec![])
            .output_any("y", BOOL),
    ];
    for (i, m) in bad.iter().enumerate() {
        let e = ExecutionGraph::from_bytes(&m.bytes(), "bad", &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("case {i} loaded"));
        assert!(
            matches!(
                e,
                aegis_exec::ExecError::InvalidNode { .. }
                    | aegis_exec::ExecError::ShapeMismatch { .. }
            ),
            "case {i}: {e:?}"
        );
    }
}

#[test]
fn concat_parts_are_planned_in_place_and_the_rest_is_copied() {
    // c = Concat(Relu(x), Sigmoid(x)); f = Concat(c, Neg(x), x): every part but the graph
    // input x is produced straight into its place in f, and f's Concat copies only x.
    let m = Model::new(13)
        .input("x", F32, &[1, 16, 4, 4])
        .op("Relu", &["x"], &["a"], vec![])
        .op("Sigmoid", &["x"], &["b"], vec![])
        .op("Concat", &["a", "b"], &["c"], vec![attr_i("axis", 1)])
        .op("Neg", &["x"], &["e"], vec![])
        .op("Concat", &["c", "e", "x"], &["f"], vec![attr_i("axis", 1)])
        .output_any("f", F32);
    let g = Arc::new(load(&m));
    let plan = g.plan();
    plan.validate().unwrap();
    let id = |n: &str| g.tensor_by_name(n).unwrap().index();
    let off = |n: &str| plan.offset_of(id(n));
    let part = 16 * 16 * 4;
    assert_eq!(off("a"), off("c"));
    assert_eq!(off("b").unwrap(), off("c").unwrap() + part);
    assert_eq!(off("c"), off("f"));
    assert_eq!(off("e").unwrap(), off("f").unwrap() + 2 * part);
    assert_eq!(plan.nested.len(), 4, "{:?}", plan.nested);
    assert!(plan.nested.iter().all(|h| h.inner != id("x")));
    // f's block (four parts) plus x: nothing else is ever alive beside them.
    assert_eq!(plan.peak_bytes, 5 * part);
    let x: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 32.0).collect();
    let got = run_f32(&g, &[(vec![1, 16, 4, 4], x.clone())]);
    let want: Vec<f32> = x
        .iter()
        .map(|&v| v.max(0.0))
        .chain(x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())))
        .chain(x.iter().map(|&v| -v))
        .chain(x.iter().copied())
        .collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-6, "element {i}: {g} vs {w}");
    }
}

#[test]
fn concat_over_the_batch_stays_a_copy() {
    // Batch 2, axis 1: each part is two runs of the output, so nothing is nested.
    let m = Model::new(13)
        .input("x", F32, &[2, 64, 2, 2])
        .op("Relu", &["x"], &["a"], vec![])
        .op("Neg", &["x"], &["b"], vec![])
        .op("Concat", &["a", "b"], &["c"], vec![attr_i("axis", 1)])
        .op("Relu", &["c"], &["y"], vec![])
        .output_any("y", F32);
    let g = Arc::new(load(&m));
    assert!(g.plan().nested.is_empty(), "{:?}", g.plan().nested);
    let x: Vec<f32> = (0..512).map(|i| i as f32 - 256.0).collect();
    let got = run_f32(&g, &[(vec![2, 64, 2, 2], x.clone())]);
    for n in 0..2 {
        for (k, &v) in x[n * 256..(n + 1) * 256].iter().enumerate() {
            assert_eq!(got[n * 512 + k], v.max(0.0));
            assert_eq!(got[n * 512 + 256 + k], (-v).max(0.0));
        }
    }
}

#[rstest::rstest]
#[case::several_rows(3, false)]
#[case::one_row_keeps_n_by_k(1, true)]
fn gemm_constant_b_is_stored_untransposed_for_several_rows(
    #[case] m: usize,
    #[case] keeps_trans_b: bool,
) {
    // Y = alpha * A * B^T + beta * C with B constant [N=4, K=5], C [4] broadcast.
    let (n, k) = (4usize, 5usize);
    let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let c = [0.5f32, -1.0, 2.0, 0.25];
    let model = Model::new(13)
        .input("a", F32, &[m as i64, k as i64])
        .init(tensor_f32("b", &[n as i64, k as i64], &b))
        .init(tensor_f32("c", &[n as i64], &c))
        .op(
            "Gemm",
            &["a", "b", "c"],
            &["y"],
            vec![
                attr_i("transB", 1),
                attr_f("alpha", 0.5),
                attr_f("beta", 2.0),
            ],
        )
        .output_any("y", F32);
    let g = Arc::new(load(&model));
    let node = &g.operators()[0];
    match node.op {
        Op::Gemm { trans_b, .. } => assert_eq!(trans_b, keeps_trans_b),
        ref other => panic!("{other:?}"),
    }
    let b_shape = &g.tensor(node.inputs[1]).shape;
    assert_eq!(
        b_shape,
        &if keeps_trans_b {
            vec![n, k]
        } else {
            vec![k, n]
        }
    );
    let a: Vec<f32> = (0..m * k).map(|i| i as f32 - 2.0).collect();
    let got = run_f32(&g, &[(vec![m, k], a.clone())]);
    for i in 0..m {
        for j in 0..n {
            let dot: f32 = (0..k).map(|t| a[i * k + t] * b[j * k + t]).sum();
            let want = 0.5 * dot + 2.0 * c[j];
            let g = got[i * n + j];
            assert!((g - want).abs() <= 1e-4, "({i}, {j}): {g} vs {want}");
        }
    }
}

#[test]
fn gemms_sharing_a_constant_b_share_its_untransposed_copy() {
    // y = A * B^T, z = Y * B^T with one constant B [4, 4]: one [K, N] copy, read by both.
    let b: Vec<f32> = (0..16).map(|i| (i as f32 * 0.21).cos()).collect();
    let model = Model::new(13)
        .input("a", F32, &[3, 4])
        .init(tensor_f32("b", &[4, 4], &b))
        .op("Gemm", &["a", "b"], &["y"], vec![attr_i("transB", 1)])
        .op("Gemm", &["y", "b"], &["z"], vec![attr_i("transB", 1)])
        .output_any("z", F32);
    let g = Arc::new(load(&model));
    let ops = g.operators();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].inputs[1], ops[1].inputs[1]);
    assert!(ops
        .iter()
        .all(|n| matches!(n.op, Op::Gemm { trans_b: false, .. })));
    let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let mul_bt = |x: &[f32]| -> Vec<f32> {
        (0..3)
            .flat_map(|i| (0..4).map(move |j| (i, j)))
            .map(|(i, j)| (0..4).map(|t| x[i * 4 + t] * b[j * 4 + t]).sum())
            .collect()
    };
    let want = mul_bt(&mul_bt(&a));
    let got = run_f32(&g, &[(vec![3, 4], a)]);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4, "element {i}: {g} vs {w}");
    }
}

#[test]
fn size_and_integer_neg_fold_into_the_shapes_they_feed() {
    // Expanded LayerNormalization's shape arithmetic: Size of a Shape (the rank) and Neg of
    // a constant axis feed a ConstantOfShape, which must be known at load.
    let m = Model::new(17)
        .input("x", F32, &[2, 3, 4])
        .init(tensor_i64("axis", &[1], &[-2]))
        .op("Shape", &["x"], &["shape"], vec![])
        .op("Size", &["shape"], &["rank"], vec![])
        .op("Size", &["x"], &["numel"], vec![])
        .op("Neg", &["axis"], &["n"], vec![])
        .op(
            "ConstantOfShape",
            &["n"],
            &["ones"],
            vec![attr_t("value", tensor_i64("", &[1], &[1]))],
        )
        .op("Add", &["x", "x"], &["y"], vec![])
        .output_any("y", F32)
        .output_any("rank", I64)
        .output_any("numel", I64)
        .output_any("ones", I64);
    let g = load(&m);
    assert_eq!(only_op(&g), &Op::Add);
    let data = |i: usize| g.constant_data(g.outputs()[i]);
    assert_eq!(data(1), Some(&TensorData::I64(vec![3])));
    assert!(
        g.tensor(g.outputs()[1]).shape.is_empty(),
        "Size is a scalar"
    );
    assert_eq!(data(2), Some(&TensorData::I64(vec![24])));
    assert_eq!(data(3), Some(&TensorData::I64(vec![1, 1])));
}

#[test]
fn cast_like_takes_the_second_inputs_type_and_reduce_l1_l2_run() {
    let m = Model::new(18)
        .input("x", F32, &[2, 3])
        .input("like", I64, &[1])
        .init(tensor_i64("axes", &[1], &[1]))
        .op("CastLike", &["x", "like"], &["xi"], vec![])
        .op(
            "ReduceL1",
            &["x", "axes"],
            &["l1"],
            vec![attr_i("keepdims", 0)],
        )
        .op(
            "ReduceL2",
            &["x", "axes"],
            &["l2"],
            vec![attr_i("keepdims", 0)],
        )
        .op("Add", &["l1", "l2"], &["y"], vec![])
        .output_any("y", F32)
        .output_any("xi", I64);
    let g = load(&m);
    let xi = g.outputs()[1];
    assert_eq!(g.tensor(xi).dtype, aegis_exec::DType::I64);
    assert!(g.operators().iter().any(|n| n.op
        == Op::Cast {
            to: aegis_exec::DType::I64,
            narrow: aegis_exec::kernels::NarrowMode::default(),
        }));
    let g = Arc::new(g);
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 20);
    let model = PreparedModel::prepare(Arc::clone(&g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    let x = HostTensor::from_f32(vec![2, 3], &[3.0, -4.0, 0.0, 1.5, 2.0, -6.0]).unwrap();
    let like = HostTensor::from_data(vec![1], &TensorData::I64(vec![0]));
    let outs = Executor::run(&model, &[x, like], &[&stream]).unwrap();
    // Row 0: L1 7, L2 5; row 1: L1 9.5, L2 sqrt(2.25 + 4 + 36) = 6.5.
    assert_eq!(outs[0].to_f32().unwrap(), vec![12.0, 16.0]);
    assert_eq!(outs[1].dtype, aegis_exec::DType::I64);
    let xi: Vec<i64> = outs[1]
        .data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(xi, vec![3, -4, 0, 1, 2, -6]);
}

#[test]
fn global_lp_pool_eye_like_and_group_norm_parameter_shapes() {
    // GlobalLpPool: one window over each whole plane.
    let m = Model::new(13)
        .input("x", F32, &[1, 2, 2, 2])
        .op("GlobalLpPool", &["x"], &["y"], vec![attr_i("p", 2)])
        .output_any("y", F32);
    let g = Arc::new(load(&m));
    assert_eq!(out_shape(&g), vec![1, 2, 1, 1]);
    let x = vec![1.0, 2.0, 2.0, 4.0, 0.0, 3.0, 0.0, -4.0];
    assert_eq!(run_f32(&g, &[(vec![1, 2, 2, 2], x)]), vec![5.0, 5.0]);

    // EyeLike folds to a constant of its input's static shape.
    let m = Model::new(13)
        .input("x", F32, &[2, 3])
        .op(
            "EyeLike",
            &["x"],
            &["eye"],
            vec![attr_i("k", 1), attr_i("dtype", 7)],
        )
        .op("Add", &["x", "x"], &["y"], vec![])
        .output_any("y", F32)
        .output_any("eye", I64);
    let g = load(&m);
    assert_eq!(
        g.constant_data(g.outputs()[1]),
        Some(&TensorData::I64(vec![0, 1, 0, 0, 0, 1]))
    );

    // GroupNormalization: scale and bias per group at opset 18, per channel at 21.
    let gn = |opset: i64, params: i64| {
        let m = Model::new(opset)
            .input("x", F32, &[1, 4, 2])
            .init(tensor_f32("s", &[params], &vec![1.0; params as usize]))
            .init(tensor_f32("b", &[params], &vec![0.0; params as usize]))
            .op(
                "GroupNormalization",
                &["x", "s", "b"],
                &["y"],
                vec![attr_i("num_groups", 2)],
            )
            .output_any("y", F32);
        ExecutionGraph::from_bytes(&m.bytes(), "gn", &LoadOptions::default())
    };
    assert!(gn(18, 2).is_ok());
    assert!(gn(21, 4).is_ok());
    let err = gn(18, 4).unwrap_err().to_string();
    assert!(err.contains("scale [4] is not [2]"), "{err}");
    assert!(gn(21, 2).is_err());
}

#[test]
fn einsum_equations_resolve_at_load_and_run() {
    let einsum = |eq: &str, shapes: &[&[i64]]| {
        let names = ["a", "b", "c"];
        let mut m = Model::new(12);
        for (i, s) in shapes.iter().enumerate() {
            m = m.input(names[i], F32, s);
        }
        m.op(
            "Einsum",
            &names[..shapes.len()],
            &["y"],
            vec![attr_s("equation", eq)],
        )
        .output_any("y", F32)
    };
    // Spaces as in the ONNX tests; a batched matmul.
    let g = Arc::new(load(&einsum("bij, bjk -> bik", &[&[2, 2, 3], &[2, 3, 1]])));
    assert_eq!(out_shape(&g), vec![2, 2, 1]);
    let a: Vec<f32> = (1..=12).map(|v| v as f32).collect();
    let y = run_f32(
        &g,
        &[
            (vec![2, 2, 3], a),
            (vec![2, 3, 1], vec![1.0, 0.0, -1.0, 2.0, 1.0, 0.0]),
        ],
    );
    // Batch 0: rows [1 2 3], [4 5 6] . [1 0 -1]; batch 1: [7 8 9], [10 11 12] . [2 1 0].
    assert_eq!(y, vec![-2.0, -2.0, 22.0, 31.0]);
    // Implicit output: the letters used once, alphabetically (k before i here is "ik").
    let g = load(&einsum("kj,ji", &[&[4, 3], &[3, 5]]));
    assert_eq!(out_shape(&g), vec![5, 4]);
    // Ellipsis and a diagonal.
    let g = load(&einsum("...ii->...i", &[&[3, 5, 5]]));
    assert_eq!(out_shape(&g), vec![3, 5]);
    // Ellipses of different widths broadcast, right-aligned.
    let g = load(&einsum("...ij,...jk", &[&[2, 1, 4, 3], &[6, 3, 2]]));
    assert_eq!(out_shape(&g), vec![2, 6, 4, 2]);
    for (eq, shapes, what) in [
        (
            "ij,jk->iz",
            &[&[2, 3][..], &[3, 4][..]][..],
            "not in any input",
        ),
        ("ij->i", &[&[2, 3, 4][..]][..], "subscripts"),
        (
            "ij,jk->ik",
            &[&[2, 3][..], &[4, 4][..]][..],
            "same subscript",
        ),
        ("i1->i", &[&[2, 3][..]][..], "'1'"),
    ] {
        let err =
            ExecutionGraph::from_bytes(&einsum(eq, shapes).bytes(), "e", &LoadOptions::default())
                .unwrap_err()
                .to_string();
        assert!(err.contains(what), "{eq}: {err}");
    }
}

/// `If` on `cond`: `then` adds 1 to outer `x`, `else` doubles it (both read `x` from the
/// enclosing graph without listing it as an input).
fn if_model(cond_nodes: impl FnOnce(Model) -> Model, cond: &str) -> Model {
    let then = Model::new(13)
        .init(tensor_f32("one", &[], &[1.0]))
        .op("Add", &["x", "one"], &["t"], vec![])
        .output_any("t", F32);
    let els = Model::new(13)
        .init(tensor_f32("two", &[], &[2.0]))
        .op("Mul", &["x", "two"], &["t"], vec![])
        .output_any("t", F32);
    let m = cond_nodes(Model::new(13).input("x", F32, &[2, 3]));
    m.node(node(
        "If",
        "choose",
        &[cond],
        &["y"],
        vec![attr_g("then_branch", then), attr_g("else_branch", els)],
    ))
    .op("Relu", &["y"], &["z"], vec![])
    .output_any("z", F32)
}

#[test]
fn if_on_a_shape_condition_inlines_the_taken_branch() {
    // cond = Shape(x)[1] > k: folded at load, so the graph holds the taken branch only.
    let with_k = |k: i64| {
        if_model(
            |m| {
                m.init(tensor_i64("one_idx", &[], &[1]))
                    .init(tensor_i64("k", &[], &[k]))
                    .op("Shape", &["x"], &["s"], vec![])
                    .op("Gather", &["s", "one_idx"], &["d"], vec![])
                    .op("Greater", &["d", "k"], &["c"], vec![])
            },
            "c",
        )
    };
    let x = HostTensor::from_f32(vec![2, 3], &[-1.0, 0.5, 2.0, 3.0, -4.0, 0.0]).unwrap();
    for (k, op_name, want) in [
        (2, "Add", [0.0f32, 1.5, 3.0, 4.0, 0.0, 1.0]),
        (3, "Mul", [0.0, 1.0, 4.0, 6.0, 0.0, 0.0]),
    ] {
        let g = Arc::new(load(&with_k(k)));
        let ops: Vec<String> = g.operators().iter().map(|o| o.name.clone()).collect();
        assert_eq!(g.operators().len(), 2, "{ops:?}");
        let tag = if op_name == "Add" { "then" } else { "else" };
        assert!(
            ops[0].starts_with(&format!("choose/{tag}/")),
            "the branch's node keeps its path: {ops:?}"
        );
        let out = run_any(&g, std::slice::from_ref(&x));
        assert_eq!(out[0].to_f32().unwrap(), want, "k = {k}");
    }
}

#[test]
fn if_branches_nest_and_their_names_do_not_collide() {
    // The outer branch defines `t` (a name the main graph also uses) and an inner `If` reads
    // it from the enclosing branch.
    let inner_then = Model::new(13)
        .init(tensor_f32("ten", &[], &[10.0]))
        .op("Add", &["t", "ten"], &["u"], vec![])
        .output_any("u", F32);
    let inner_else = Model::new(13)
        .op("Neg", &["t"], &["u"], vec![])
        .output_any("u", F32);
    let outer_then = Model::new(13)
        .init(tensor_f32("three", &[], &[3.0]))
        .init(tensor_small_int("no", BOOL, &[], &[0]))
        .op("Mul", &["x", "three"], &["t"], vec![])
        .node(node(
            "If",
            "inner",
            &["no"],
            &["v"],
            vec![
                attr_g("then_branch", inner_then),
                attr_g("else_branch", inner_else),
            ],
        ))
        .output_any("v", F32);
    let outer_else = Model::new(13)
        .op("Identity", &["x"], &["v"], vec![])
        .output_any("v", F32);
    let m = Model::new(13)
        .input("x", F32, &[3])
        .init(tensor_small_int("yes", BOOL, &[], &[1]))
        .op("Abs", &["x"], &["t"], vec![])
        .node(node(
            "If",
            "outer",
            &["yes"],
            &["y"],
            vec![
                attr_g("then_branch", outer_then),
                attr_g("else_branch", outer_else),
            ],
        ))
        .op("Add", &["y", "t"], &["z"], vec![])
        .output_any("z", F32);
    let g = Arc::new(load(&m));
    let x = HostTensor::from_f32(vec![3], &[1.0, -2.0, 0.5]).unwrap();
    let out = run_any(&g, &[x]);
    // z = -(3x) + |x|
    assert_eq!(out[0].to_f32().unwrap(), [-2.0, 8.0, -1.0]);
    let names: Vec<String> = g.operators().iter().map(|o| o.name.clone()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("outer/then/inner/else/")),
        "{names:?}"
    );
}

#[test]
fn if_on_input_data_is_a_typed_error_naming_the_node() {
    let m = if_model(|m| m.input("c", BOOL, &[]), "c");
    let e = ExecutionGraph::from_bytes(&m.bytes(), "if", &LoadOptions::default()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("choose"), "{text}");
    assert!(text.contains("must be known at load"), "{text}");
    // An unsupported operator inside a branch is reported with its path, before anything runs.
    let then = Model::new(13)
        .op("Unique", &["x"], &["t"], vec![])
        .output_any("t", F32);
    let els = Model::new(13)
        .op("Identity", &["x"], &["t"], vec![])
        .output_any("t", F32);
    let m = Model::new(13)
        .input("x", F32, &[2])
        .init(tensor_small_int("yes", BOOL, &[], &[1]))
        .node(node(
            "If",
            "choose",
            &["yes"],
            &["y"],
            vec![attr_g("then_branch", then), attr_g("else_branch", els)],
        ))
        .output_any("y", F32);
    let e = ExecutionGraph::from_bytes(&m.bytes(), "if", &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("Unique (node choose/then/Unique_t)"),
        "{e}"
    );
}

#[test]
fn loss_operators_check_their_operands_at_load() {
    let nll = |target_dims: &[i64], reduction: &str| {
        Model::new(13)
            .input("x", F32, &[2, 3, 4])
            .input("t", I64, target_dims)
            .op(
                "NegativeLogLikelihoodLoss",
                &["x", "t"],
                &["loss"],
                vec![attr_s("reduction", reduction)],
            )
            .output_any("loss", F32)
    };
    let g = load(&nll(&[2, 4], "sum"));
    assert_eq!(
        out_shape(&g),
        Vec::<usize>::new(),
        "a reduced loss is a scalar"
    );
    assert_eq!(out_shape(&load(&nll(&[2, 4], "none"))), vec![2, 4]);
    let err = |m: &Model| {
        ExecutionGraph::from_bytes(&m.bytes(), "loss", &LoadOptions::default())
            .unwrap_err()
            .to_string()
    };
    let e = err(&nll(&[2, 3], "mean"));
    assert!(
        e.contains("target of shape [2, 3]") && e.contains("expected [2, 4]"),
        "{e}"
    );
    let e = err(&nll(&[2, 4], "avg"));
    assert!(e.contains("reduction 'avg'"), "{e}");
    // SoftmaxCrossEntropyLoss's optional log_prob output has the scores' shape.
    let m = Model::new(13)
        .input("x", F32, &[2, 3])
        .input("t", I32, &[2])
        .op(
            "SoftmaxCrossEntropyLoss",
            &["x", "t"],
            &["loss", "log_prob"],
            vec![],
        )
        .output_any("loss", F32)
        .output_any("log_prob", F32);
    let g = load(&m);
    assert_eq!(g.tensor(g.outputs()[1]).shape, vec![2, 3]);
}

#[test]
fn spectral_operators_resolve_their_shapes_at_load() {
    let err = |m: &Model| {
        ExecutionGraph::from_bytes(&m.bytes(), "spectral", &LoadOptions::default())
            .unwrap_err()
            .to_string()
    };
    // DFT-20 over axis 1 of [2, 10, 1], padded to 16, one-sided: [2, 9, 2].
    let dft = |axis: i64| {
        Model::new(20)
            .input("x", F32, &[2, 10, 1])
            .init(tensor_i64("n", &[], &[16]))
            .init(tensor_i64("axis", &[], &[axis]))
            .op(
                "DFT",
                &["x", "n", "axis"],
                &["y"],
                vec![attr_i("onesided", 1)],
            )
            .output_any("y", F32)
    };
    assert_eq!(out_shape(&load(&dft(1))), vec![2, 9, 2]);
    let e = err(&dft(-1));
    assert!(e.contains("axis 2 of a rank-3 input"), "{e}");
    // STFT: frames of 8 every 4 samples over 30: 6 frames of 5 one-sided bins.
    let stft = |frame: i64| {
        Model::new(17)
            .input("x", F32, &[1, 30, 1])
            .init(tensor_i64("step", &[], &[4]))
            .init(tensor_i64("len", &[], &[frame]))
            .op("STFT", &["x", "step", "", "len"], &["y"], vec![])
            .output_any("y", F32)
    };
    assert_eq!(out_shape(&load(&stft(8))), vec![1, 6, 5, 2]);
    let e = err(&stft(31));
    assert!(
        e.contains("frame length 31 for a signal of 30 samples"),
        "{e}"
    );
}

/// A Loop body: `y_out = y_in + float(i)`, `scan = y_out * 2`, `cond_out = i < stop`
/// (with `stop` from the enclosing graph), for opset 13.
fn loop_body() -> Model {
    Model::new(13)
        .input("i", I64, &[])
        .input("cond_in", BOOL, &[])
        .input("y_in", F32, &[2])
        .init(tensor_f32("two", &[], &[2.0]))
        .op("Cast", &["i"], &["fi"], vec![attr_i("to", 1)])
        .op("Add", &["y_in", "fi"], &["y_out"], vec![])
        .op("Mul", &["y_out", "two"], &["scan"], vec![])
        .op("Less", &["i", "stop"], &["cond_out"], vec![])
        .output_any("cond_out", BOOL)
        .output_any("y_out", F32)
        .output_any("scan", F32)
}

fn loop_model(trips: Option<i64>, stop: i64) -> Model {
    let mut m = Model::new(13)
        .input("x", F32, &[2])
        .init(tensor_i64("stop", &[], &[stop]))
        .init(tensor_small_int("go", BOOL, &[], &[1]));
    let trip_name = match trips {
        Some(t) => {
            m = m.init(tensor_i64("trips", &[], &[t]));
            "trips"
        }
        None => "",
    };
    m.node(node(
        "Loop",
        "repeat",
        &[trip_name, "go", "x"],
        &["y", "ys"],
        vec![attr_g("body", loop_body())],
    ))
    .output_any("y", F32)
    .output_any("ys", F32)
}

#[test]
fn loop_with_a_known_trip_count_is_unrolled() {
    let x = HostTensor::from_f32(vec![2], &[1.0, -1.0]).unwrap();
    // Three iterations (i = 0, 1, 2): y = x + 0 + 1 + 2; ys stacks 2 * y after each.
    let g = Arc::new(load(&loop_model(Some(3), 100)));
    assert_eq!(g.tensor(g.outputs()[1]).shape, vec![3, 2]);
    let out = run_any(&g, std::slice::from_ref(&x));
    assert_eq!(out[0].to_f32().unwrap(), [4.0, 2.0]);
    assert_eq!(out[1].to_f32().unwrap(), [2.0, -2.0, 4.0, 0.0, 8.0, 4.0]);
    let names: Vec<String> = g.operators().iter().map(|o| o.name.clone()).collect();
    assert!(
        names.iter().any(|n| n.starts_with("repeat/iter2/")),
        "{names:?}"
    );
    // No trip count: the condition (i < 1) stops it after i = 1, two iterations.
    let g = Arc::new(load(&loop_model(None, 1)));
    assert_eq!(g.tensor(g.outputs()[1]).shape, vec![2, 2]);
    let out = run_any(&g, &[x]);
    assert_eq!(out[0].to_f32().unwrap(), [2.0, 0.0]);
}

#[test]
fn loop_that_cannot_be_unrolled_is_a_typed_error() {
    let err = |m: &Model| {
        ExecutionGraph::from_bytes(&m.bytes(), "loop", &LoadOptions::default())
            .unwrap_err()
            .to_string()
    };
    let e = err(&loop_model(Some(5000), i64::MAX));
    assert!(
        e.contains("repeat") && e.contains("more than 1024 iterations"),
        "{e}"
    );
    // A trip count read from input data.
    let m = Model::new(13)
        .input("x", F32, &[2])
        .input("n", I64, &[])
        .init(tensor_i64("stop", &[], &[9]))
        .node(node(
            "Loop",
            "repeat",
            &["n", "", "x"],
            &["y", "ys"],
            vec![attr_g("body", loop_body())],
        ))
        .output_any("y", F32);
    let e = err(&m);
    assert!(
        e.contains("trip count 'n'") && e.contains("must be known at load"),
        "{e}"
    );
}

#[test]
fn col2im_and_roi_align_resolve_their_shapes_at_load() {
    let err = |m: &Model| {
        ExecutionGraph::from_bytes(&m.bytes(), "regions", &LoadOptions::default())
            .unwrap_err()
            .to_string()
    };
    // 2x2 blocks at stride 2 over 4x6: 2 x 3 = 6 positions.
    let fold = |l: i64| {
        Model::new(18)
            .input("x", F32, &[1, 8, l])
            .init(tensor_i64("image", &[2], &[4, 6]))
            .init(tensor_i64("block", &[2], &[2, 2]))
            .op(
                "Col2Im",
                &["x", "image", "block"],
                &["y"],
                vec![attr_ints("strides", &[2, 2])],
            )
            .output_any("y", F32)
    };
    assert_eq!(out_shape(&load(&fold(6))), vec![1, 2, 4, 6]);
    let e = err(&fold(5));
    assert!(e.contains("expected [N, C * 4, 6]"), "{e}");
    let roi = |rois: &[i64]| {
        Model::new(16)
            .input("x", F32, &[2, 3, 8, 8])
            .input("rois", F32, rois)
            .input("b", I64, &[5])
            .op(
                "RoiAlign",
                &["x", "rois", "b"],
                &["y"],
                vec![attr_i("output_height", 2), attr_i("output_width", 3)],
            )
            .output_any("y", F32)
    };
    assert_eq!(out_shape(&load(&roi(&[5, 4]))), vec![5, 3, 2, 3]);
    let e = err(&roi(&[4, 4]));
    assert!(e.contains("expected [R, 4] and [R]"), "{e}");
}

#[test]
fn deform_conv_checks_its_offsets_at_load() {
    let m = |offset: &[i64]| {
        Model::new(19)
            .input("x", F32, &[1, 4, 5, 5])
            .init(tensor_f32("w", &[6, 2, 3, 3], &[0.1; 108]))
            .input("off", F32, offset)
            .op(
                "DeformConv",
                &["x", "w", "off"],
                &["y"],
                vec![attr_i("group", 2), attr_ints("pads", &[1, 1, 1, 1])],
            )
            .output_any("y", F32)
    };
    assert_eq!(out_shape(&load(&m(&[1, 18, 5, 5]))), vec![1, 6, 5, 5]);
    let e = ExecutionGraph::from_bytes(&m(&[1, 18, 3, 3]).bytes(), "d", &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("offset of shape [1, 18, 3, 3], expected [1, 18, 5, 5]"),
        "{e}"
    );
}

#[test]
fn shape_arithmetic_with_reductions_and_extrema_folds_at_load() {
    // Reshape(x, [Shape(x)[0], ReduceProd(Shape(x)[1:])]) and Expand(u, Max(Shape(x),
    // floor)): both shapes computed at load, so the Reshape and the Expand plan statically.
    let m = Model::new(13)
        .input("x", F32, &[2, 3, 4])
        .init(tensor_i64("s", &[1], &[1]))
        .init(tensor_i64("e", &[1], &[3]))
        .init(tensor_i64("z", &[1], &[0]))
        .init(tensor_i64("one", &[1], &[1]))
        .init(tensor_i64("floor", &[3], &[4, 1, 1]))
        .init(tensor_f32("u", &[1, 3, 4], &[0.5; 12]))
        .op("Shape", &["x"], &["sh"], vec![])
        .op("Slice", &["sh", "s", "e", "z"], &["tail"], vec![])
        .op("ReduceProd", &["tail"], &["n"], vec![attr_i("keepdims", 1)])
        .op("Slice", &["sh", "z", "one", "z"], &["b"], vec![])
        .op("Concat", &["b", "n"], &["ns"], vec![attr_i("axis", 0)])
        .op("Reshape", &["x", "ns"], &["y"], vec![])
        .op("Max", &["sh", "floor"], &["big"], vec![])
        .op("Expand", &["u", "big"], &["w"], vec![])
        .output_any("y", F32)
        .output_any("w", F32);
    let g = load(&m);
    assert_eq!(g.tensor(g.outputs()[0]).shape, vec![2, 12]);
    assert_eq!(g.tensor(g.outputs()[1]).shape, vec![4, 3, 4]);
}

#[test]
fn nonzero_of_a_constant_folds_and_of_data_is_a_typed_error() {
    let m = Model::new(13)
        .init(tensor_i64("c", &[2, 3], &[0, 5, 0, -1, 0, 2]))
        .op("NonZero", &["c"], &["idx"], vec![])
        .output_any("idx", I64);
    let g = load(&m);
    let out = g.outputs()[0];
    assert_eq!(g.tensor(out).shape, vec![2, 3]);
    match g.constant_data(out) {
        Some(TensorData::I64(v)) => assert_eq!(v, &[0, 1, 1, 1, 0, 2]),
        other => panic!("{other:?}"),
    }
    let m = Model::new(13)
        .input("x", F32, &[4])
        .op("NonZero", &["x"], &["idx"], vec![])
        .output_any("idx", I64);
    let e = ExecutionGraph::from_bytes(&m.bytes(), "nz", &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("depends on the data"), "{e}");
}

/// Runs `g` on raw host tensors and returns every output.
fn run_raw(g: &Arc<ExecutionGraph>, inputs: &[HostTensor]) -> Vec<HostTensor> {
    let device = Device::host();
    let pool = DeviceMemoryPool::new(&device, 1 << 20);
    let model = PreparedModel::prepare(Arc::clone(g), &pool, &ExecOptions::default()).unwrap();
    let stream = Stream::new(&device, StreamPriority::NORMAL).unwrap();
    Executor::run(&model, inputs, &[&stream]).unwrap()
}

fn f64_tensor(shape: &[usize], v: &[f64]) -> HostTensor {
    HostTensor {
        dtype: aegis_exec::DType::F64,
        shape: shape.to_vec(),
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn f64_values(t: &HostTensor) -> Vec<f64> {
    assert_eq!(t.dtype, aegis_exec::DType::F64);
    t.to_f64().unwrap()
}

#[test]
fn f64_graphs_compute_in_f64_and_run_their_functions_in_place() {
    // y = Log(Exp(x * x) + c), s = ReduceSum(x), k = CumSum(Neg(x)); `c` a double constant.
    // Exp and Neg each read an intermediate read by nothing else: the plan puts their
    // outputs on it (the function kernels' in-place form, for f64 as for f32).
    let c = tract_onnx::pb::TensorProto {
        name: "c".into(),
        dims: vec![1],
        data_type: 11,
        double_data: vec![0.1],
        ..Default::default()
    };
    let m = Model::new(14)
        .input("x", 11, &[6])
        .init(c)
        .init(tensor_i64("axis", &[], &[0]))
        .op("Mul", &["x", "x"], &["a"], vec![])
        .op("Exp", &["a"], &["e"], vec![])
        .op("Add", &["e", "c"], &["b"], vec![])
        .op("Log", &["b"], &["y"], vec![])
        .op("ReduceSum", &["x"], &["s"], vec![attr_i("keepdims", 0)])
        .op("Neg", &["x"], &["n"], vec![])
        .op("CumSum", &["n", "axis"], &["k"], vec![])
        .output_any("y", 11)
        .output_any("s", 11)
        .output_any("k", 11);
    let g = Arc::new(load(&m));
    assert_shares(&g, "a", "e");
    let x = [0.3, -1.7, 2.25, 1e-9, -0.5, 3.0];
    let out = run_raw(&g, &[f64_tensor(&[6], &x)]);
    let y = f64_values(&out[0]);
    for (i, &v) in x.iter().enumerate() {
        let want = ((v * v).exp() + 0.1).ln();
        // f64 throughout: within a few f64 ulps (an f32 pass would be ~1e-7 off).
        assert!(
            (y[i] - want).abs() <= 1e-14 * want.abs().max(1.0),
            "{i}: {} vs {want}",
            y[i]
        );
    }
    assert_eq!(f64_values(&out[1]), vec![x.iter().sum::<f64>()]);
    let mut run = 0.0;
    let want_k: Vec<f64> = x
        .iter()
        .map(|v| {
            run += -v;
            run
        })
        .collect();
    assert_eq!(f64_values(&out[2]), want_k);
}

#[test]
fn integer_intermediates_are_never_planned_in_place_under_a_kernel_without_that_form() {
    // a = Neg(x); b = Abs(a); c = Add(a, b); y = Neg(c). In f32, c takes b's storage (b dies
    // at the Add); the i64 Add kernel has no in-place form, so there the plan keeps them
    // apart and the model runs (the binder used to refuse it).
    let model = |elem: i32| {
        Model::new(13)
            .input("x", elem, &[1024])
            .op("Neg", &["x"], &["a"], vec![])
            .op("Abs", &["a"], &["b"], vec![])
            .op("Add", &["a", "b"], &["c"], vec![])
            .op("Neg", &["c"], &["y"], vec![])
            .output_any("y", elem)
    };
    assert_shares(&load(&model(F32)), "b", "c");
    let g = Arc::new(load(&model(I64)));
    let (b, c) = (
        g.tensor_by_name("b").unwrap().index(),
        g.tensor_by_name("c").unwrap().index(),
    );
    let shared = &g.plan().shared;
    assert!(
        !shared.iter().any(|h| h.input == b && h.output == c),
        "{shared:?}"
    );
    let xs: Vec<i64> = (0..1024).map(|i| i - 512).collect();
    let x = HostTensor {
        dtype: aegis_exec::DType::I64,
        shape: vec![1024],
        data: xs.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let y = &run_raw(&g, &[x])[0];
    let got: Vec<i64> = y
        .data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<i64> = xs.iter().map(|&v| -(-v + v.abs())).collect();
    assert_eq!(got, want);
}

fn int_tensor<T: Copy>(dtype: aegis_exec::DType, v: &[T], bytes: fn(T) -> Vec<u8>) -> HostTensor {
    HostTensor {
        dtype,
        shape: vec![v.len()],
        data: v.iter().flat_map(|&x| bytes(x)).collect(),
    }
}

#[test]
fn integer_sums_add_integers() {
    // Sum over run-time i64 and i32 inputs (the f32 kernel once read their bytes as f32).
    for (elem, dtype) in [(I64, aegis_exec::DType::I64), (I32, aegis_exec::DType::I32)] {
        let m = Model::new(13)
            .input("a", elem, &[4])
            .input("b", elem, &[1])
            .op("Sum", &["a", "b", "a"], &["y"], vec![])
            .output_any("y", elem);
        let g = Arc::new(load(&m));
        let a = [5i64, -7, 1 << 20, 0];
        let ins = if dtype == aegis_exec::DType::I64 {
            let t = |v: &[i64]| int_tensor(dtype, v, |x: i64| x.to_le_bytes().to_vec());
            vec![t(&a), t(&[3])]
        } else {
            let t = |v: &[i64]| int_tensor(dtype, v, |x: i64| (x as i32).to_le_bytes().to_vec());
            vec![t(&a), t(&[3])]
        };
        let y = &run_raw(&g, &ins)[0];
        let w = dtype.size_bytes() as usize;
        let got: Vec<i64> = y
            .data
            .chunks_exact(w)
            .map(|c| match w {
                8 => i64::from_le_bytes(c.try_into().unwrap()),
                _ => i64::from(i32::from_le_bytes(c.try_into().unwrap())),
            })
            .collect();
        assert_eq!(got, vec![13, -11, (1 << 21) + 3, 3], "{dtype}");
    }
}

#[test]
fn sixteen_bit_and_unsigned_integers_run_their_arithmetic_and_bit_ops() {
    use aegis_exec::DType;
    // u32: y = (a << s) + max(a, b) with wrapping; u64 through Cast to f32; i16 Mod takes the
    // divisor's sign (numpy's `mod`), u16 Sub wraps.
    let m = Model::new(18)
        .input("a", 12, &[3])
        .input("b", 12, &[3])
        .input("s", 12, &[3])
        .input("big", 13, &[2])
        .input("p", 5, &[3])
        .input("q", 5, &[3])
        .input("u", 4, &[2])
        .op(
            "BitShift",
            &["a", "s"],
            &["sh"],
            vec![attr_s("direction", "LEFT")],
        )
        .op("Max", &["a", "b"], &["mx"], vec![])
        .op("Add", &["sh", "mx"], &["y"], vec![])
        .op("Cast", &["big"], &["bf"], vec![attr_i("to", 1)])
        .op("Mod", &["p", "q"], &["md"], vec![])
        .op("Sub", &["u", "u2"], &["ud"], vec![])
        .op("Mul", &["u", "u"], &["u2"], vec![])
        .output_any("y", 12)
        .output_any("bf", F32)
        .output_any("md", 5)
        .output_any("ud", 4);
    let g = Arc::new(load(&m));
    let u32s = |v: &[u32]| int_tensor(DType::U32, v, |x: u32| x.to_le_bytes().to_vec());
    let ins = [
        u32s(&[1, 0xffff_ffff, 7]),
        u32s(&[2, 3, 9]),
        u32s(&[31, 1, 40]),
        int_tensor(DType::U64, &[u64::MAX, 1 << 40], |x: u64| {
            x.to_le_bytes().to_vec()
        }),
        int_tensor(DType::I16, &[7i16, -7, 7], |x: i16| {
            x.to_le_bytes().to_vec()
        }),
        int_tensor(DType::I16, &[-3i16, 3, 3], |x: i16| {
            x.to_le_bytes().to_vec()
        }),
        int_tensor(DType::U16, &[2u16, 300], |x: u16| x.to_le_bytes().to_vec()),
    ];
    let out = run_raw(&g, &ins);
    let words = |t: &HostTensor, w: usize| -> Vec<u64> {
        t.data
            .chunks_exact(w)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..w].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect()
    };
    assert_eq!(out[0].dtype, DType::U32);
    // 1<<31 + 2; (0xffffffff << 1) + 0xffffffff wraps; a shift of 40 >= 32 empties to 0.
    let y: Vec<u64> = vec![(1 << 31) + 2, 0xffff_fffd, 9];
    assert_eq!(words(&out[0], 4), y);
    assert_eq!(
        out[1].to_f32().unwrap(),
        vec![u64::MAX as f32, (1u64 << 40) as f32]
    );
    let md: Vec<i16> = words(&out[2], 2).iter().map(|&v| v as u16 as i16).collect();
    assert_eq!(md, vec![-2, 2, 1]);
    // 2 - 4 and 300 - 90000 (mod 2^16 = 24464) wrap.
    assert_eq!(
        words(&out[3], 2),
        vec![65534, u64::from(300u16.wrapping_sub(24464))]
    );
}

#[test]
fn scan_reads_backwards_and_stacks_along_its_output_axis() {
    // A running sum over the rows of x [3, 2], read last row first; the scan output is the
    // sum after each step, stacked along axis 1 (so [2, 3]).
    let body = Model::new(16)
        .input("sum_in", F32, &[2])
        .input("row", F32, &[2])
        .op("Add", &["sum_in", "row"], &["sum_out"], vec![])
        .op("Identity", &["sum_out"], &["each"], vec![])
        .output_any("sum_out", F32)
        .output_any("each", F32);
    let m = Model::new(16)
        .input("x", F32, &[3, 2])
        .init(tensor_f32("zero", &[2], &[0.0, 0.0]))
        .node(node(
            "Scan",
            "running",
            &["zero", "x"],
            &["total", "sums"],
            vec![
                attr_g("body", body),
                attr_i("num_scan_inputs", 1),
                attr_ints("scan_input_directions", &[1]),
                attr_ints("scan_output_axes", &[1]),
            ],
        ))
        .output_any("total", F32)
        .output_any("sums", F32);
    let g = Arc::new(load(&m));
    assert_eq!(g.tensor(g.outputs()[1]).shape, vec![2, 3]);
    let x = HostTensor::from_f32(vec![3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let out = run_any(&g, &[x]);
    assert_eq!(out[0].to_f32().unwrap(), [9.0, 12.0]);
    assert_eq!(out[1].to_f32().unwrap(), [5.0, 8.0, 9.0, 6.0, 10.0, 12.0]);
}

#[test]
fn int4_weights_dequantize_blockwise_at_load_and_feed_the_matmul() {
    // W [4, 2] in INT4, two blocks of two rows each along axis 0 with their own scale and
    // zero point; packed two to a byte, first element in the low nibble.
    let w: [i8; 8] = [-8, 7, 3, -1, 0, 5, -4, 2];
    let packed: Vec<u8> = w
        .chunks(2)
        .map(|p| (p[0] as u8 & 0x0F) | ((p[1] as u8 & 0x0F) << 4))
        .collect();
    let zp: [i8; 4] = [1, -1, 0, 2];
    let zp_packed: Vec<u8> = zp
        .chunks(2)
        .map(|p| (p[0] as u8 & 0x0F) | ((p[1] as u8 & 0x0F) << 4))
        .collect();
    let scale = [0.5f32, 0.25, 2.0, 1.0];
    let m = Model::new(21)
        .input("x", F32, &[1, 4])
        .init(tensor_raw("w", I4, &[4, 2], &packed))
        .init(tensor_f32("s", &[2, 2], &scale))
        .init(tensor_raw("z", I4, &[2, 2], &zp_packed))
        .op(
            "DequantizeLinear",
            &["w", "s", "z"],
            &["wf"],
            vec![attr_i("axis", 0), attr_i("block_size", 2)],
        )
        .op("MatMul", &["x", "wf"], &["y"], vec![])
        .output_any("y", F32);
    let g = Arc::new(load(&m));
    // Folded at load into f32 weights: the MatMul is all that runs.
    let ops = g.op_histogram();
    assert_eq!(ops.get("DequantizeLinear"), None, "{ops:?}");
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let out = run_any(&g, &[HostTensor::from_f32(vec![1, 4], &x).unwrap()]);
    let mut want = [0f32; 2];
    for (r, &xr) in x.iter().enumerate() {
        for (c, acc) in want.iter_mut().enumerate() {
            let p = (r / 2) * 2 + c;
            let wf = f32::from(w[r * 2 + c] - zp[p]) * scale[p];
            *acc += xr * wf;
        }
    }
    assert_eq!(out[0].to_f32().unwrap(), want);
}

#[test]
fn float8_cast_saturates_or_overflows_as_its_attribute_says() {
    let m = Model::new(19)
        .input("x", F32, &[5])
        .op(
            "Cast",
            &["x"],
            &["sat"],
            vec![attr_i("to", F8E4M3FN.into())],
        )
        .op(
            "Cast",
            &["x"],
            &["raw"],
            vec![attr_i("to", F8E4M3FN.into()), attr_i("saturate", 0)],
        )
        .op("Cast", &["sat"], &["sat_f"], vec![attr_i("to", F32.into())])
        .op("Cast", &["raw"], &["raw_f"], vec![attr_i("to", F32.into())])
        .output_any("sat", F8E4M3FN)
        .output_any("sat_f", F32)
        .output_any("raw_f", F32);
    let g = Arc::new(load(&m));
    let x = [1.0f32, 500.0, f32::NEG_INFINITY, 0.3, -0.0];
    let out = run_any(&g, &[HostTensor::from_f32(vec![5], &x).unwrap()]);
    // The stored codes: 1.0, the max 448, -448, 0.3125 (0.3 to nearest even), -0.
    assert_eq!(out[0].dtype.to_string(), "f8e4m3fn");
    assert_eq!(out[0].data, [0x38, 0x7E, 0xFE, 0x2A, 0x80]);
    assert_eq!(out[1].to_f32().unwrap(), [1.0, 448.0, -448.0, 0.3125, -0.0]);
    // Without saturation both out-of-range values are NaN (E4M3FN has no infinity).
    let raw = out[2].to_f32().unwrap();
    assert!(raw[1].is_nan() && raw[2].is_nan(), "{raw:?}");
    assert_eq!([raw[0], raw[3]], [1.0, 0.3125]);
}

#[test]
fn quantize_to_int4_clamps_to_its_range_and_transposes_as_bytes() {
    let m = Model::new(21)
        .input("x", F32, &[2, 3])
        .init(tensor_f32("s", &[], &[0.5]))
        .init(tensor_raw("z", I4, &[], &[0x01]))
        .op("QuantizeLinear", &["x", "s", "z"], &["q"], vec![])
        .op("Transpose", &["q"], &["qt"], vec![])
        .output_any("qt", I4);
    let g = Arc::new(load(&m));
    let x = [-20.0f32, -1.4, 0.6, 3.0, 20.0, 0.0];
    let out = run_any(&g, &[HostTensor::from_f32(vec![2, 3], &x).unwrap()]);
    assert_eq!(out[0].shape, [3, 2]);
    // round(x / 0.5) + 1, clamped to -8..=7, then transposed.
    assert_eq!(out[0].to_f64().unwrap(), [-8.0, 7.0, -2.0, 7.0, 2.0, 1.0]);
}
