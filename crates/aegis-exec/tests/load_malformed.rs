//! The malformed-model corpus: each bad model gets its specific, typed, Permanent error naming
//! the model (and node where there is one). Models are built in code (see malformed/builder.rs)
//! and, for the byte-level cases, derived from a valid model's bytes.

#[path = "malformed/builder.rs"]
mod builder;

use aegis_cuda::{Categorized, ErrorCategory};
use aegis_exec::{ExecError, ExecutionGraph, LoadOptions};
use builder::*;

fn load(m: &Model) -> Result<ExecutionGraph, ExecError> {
    ExecutionGraph::from_bytes(&m.bytes(), "corpus", &LoadOptions::default())
}

fn err(m: &Model) -> ExecError {
    let e = load(m).expect_err("model must be rejected");
    assert_eq!(e.category(), ErrorCategory::Permanent, "{e}");
    assert_eq!(e.model(), "corpus");
    e
}

/// x[1,4] -> Relu -> y
fn relu_model() -> Model {
    Model::new(13)
        .input("x", F32, &[1, 4])
        .op("Relu", &["x"], &["y"], vec![])
        .output("y", F32, &[1, 4])
}

#[test]
fn the_base_model_loads() {
    let g = load(&relu_model()).unwrap();
    assert_eq!(g.operators().len(), 1);
}

#[test]
fn garbage_and_truncated_bytes_are_parse_errors() {
    for bytes in [
        b"not a protobuf at all \xff\xff\xff".to_vec(),
        vec![0xff; 64],
        relu_model().bytes()[..20].to_vec(),
    ] {
        let e = ExecutionGraph::from_bytes(&bytes, "corpus", &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, ExecError::Parse { .. }), "{e}");
        assert_eq!(e.category(), ErrorCategory::Permanent);
    }
    // Valid protobuf with no graph at all.
    let mut m = relu_model();
    m.proto.graph = None;
    assert!(matches!(err(&m), ExecError::Parse { .. }));
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e = ExecutionGraph::load("/nonexistent/model.onnx", &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, ExecError::Io { .. }), "{e}");
    assert_eq!(e.category(), ErrorCategory::Permanent);
}

#[test]
fn unsupported_opsets_are_rejected() {
    let range = aegis_exec::loader::OPSET_RANGE;
    for v in [*range.start() - 1, *range.end() + 1] {
        let mut m = relu_model();
        m.proto.opset_import[0].version = v;
        match err(&m) {
            ExecError::UnsupportedOpset { version, .. } => assert_eq!(version, v),
            e => panic!("{e}"),
        }
    }
}

#[test]
fn every_unsupported_op_is_listed_in_one_error() {
    let m = Model::new(13)
        .input("x", F32, &[1, 4])
        .node(node("Relu", "ok", &["x"], &["a"], vec![]))
        .node(node("Unique", "bad1", &["a"], &["b"], vec![]))
        .node(node("Relu", "ok2", &["b"], &["c"], vec![]))
        .node(node("NonMaxSuppression", "bad2", &["c"], &["d"], vec![]))
        .node(pb_node_in_domain(
            "FusedConv",
            "bad3",
            "com.microsoft",
            &["d"],
            &["e"],
        ))
        // Gelu exists only from opset 20.
        .node(node("Gelu", "bad4", &["e"], &["y"], vec![]))
        .output("y", F32, &[1, 4]);
    match err(&m) {
        ExecError::UnsupportedOps { ops, .. } => assert_eq!(
            ops,
            vec![
                ("Unique".to_string(), "bad1".to_string()),
                ("NonMaxSuppression".into(), "bad2".into()),
                ("com.microsoft::FusedConv".into(), "bad3".into()),
                ("Gelu".into(), "bad4".into()),
            ]
        ),
        e => panic!("{e}"),
    }
}

fn pb_node_in_domain(
    op: &str,
    name: &str,
    domain: &str,
    i: &[&str],
    o: &[&str],
) -> tract_onnx::pb::NodeProto {
    let mut n = node(op, name, i, o, vec![]);
    n.domain = domain.into();
    n
}

#[test]
fn a_cycle_is_reported_with_its_nodes() {
    let m = Model::new(13)
        .input("x", F32, &[1, 4])
        .node(node("Add", "a", &["x", "c"], &["b"], vec![]))
        .node(node("Relu", "b", &["b"], &["c"], vec![]))
        .node(node("Relu", "tail", &["c"], &["y"], vec![]))
        .output("y", F32, &[1, 4]);
    match err(&m) {
        ExecError::Cycle { nodes, .. } => assert_eq!(nodes, vec!["a", "b", "tail"]),
        e => panic!("{e}"),
    }
}

#[test]
fn a_tensor_read_but_never_produced_is_dangling() {
    let m = Model::new(13)
        .input("x", F32, &[1, 4])
        .node(node("Add", "adder", &["x", "ghost"], &["y"], vec![]))
        .output("y", F32, &[1, 4]);
    match err(&m) {
        ExecError::DanglingInput { node, tensor, .. } => {
            assert_eq!(node, "adder");
            assert_eq!(tensor, "ghost");
        }
        e => panic!("{e}"),
    }
    let m = relu_model().output("nowhere", F32, &[1]);
    assert!(matches!(err(&m), ExecError::DanglingInput { .. }));
}

#[test]
fn duplicate_producers_are_rejected() {
    let m = Model::new(13)
        .input("x", F32, &[1, 4])
        .node(node("Relu", "first", &["x"], &["y"], vec![]))
        .node(node("Sigmoid", "second", &["x"], &["y"], vec![]))
        .output("y", F32, &[1, 4]);
    match err(&m) {
        ExecError::DuplicateProducer {
            tensor,
            first,
            second,
            ..
        } => {
            assert_eq!(tensor, "y");
            assert_eq!(first, "node first");
            assert_eq!(second, "node second");
        }
        e => panic!("{e}"),
    }
    let m = relu_model().init(tensor_f32("y", &[1], &[0.0]));
    assert!(matches!(err(&m), ExecError::DuplicateProducer { .. }));
}

#[test]
fn inconsistent_shapes_are_rejected() {
    let m = Model::new(13)
        .input("a", F32, &[2, 3])
        .input("b", F32, &[4, 3])
        .op("Add", &["a", "b"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::ShapeMismatch { .. }));
    // MatMul inner dims.
    let m = Model::new(13)
        .input("a", F32, &[2, 3])
        .input("b", F32, &[4, 5])
        .op("MatMul", &["a", "b"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::ShapeMismatch { .. }));
    // Reshape to a different element count.
    let m = Model::new(13)
        .input("x", F32, &[2, 3])
        .init(tensor_i64("s", &[1], &[7]))
        .op("Reshape", &["x", "s"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::ShapeMismatch { .. }));
    // The declared output shape disagrees with inference.
    let m = Model::new(13)
        .input("x", F32, &[1, 4])
        .op("Relu", &["x"], &["y"], vec![])
        .output("y", F32, &[1, 5]);
    assert!(matches!(err(&m), ExecError::ShapeMismatch { .. }));
    // Conv channel mismatch.
    let m = Model::new(13)
        .input("x", F32, &[1, 3, 8, 8])
        .init(tensor_f32("w", &[4, 2, 3, 3], &[0.0; 72]))
        .op("Conv", &["x", "w"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::ShapeMismatch { .. }));
}

#[test]
fn unsupported_attribute_values_are_invalid_nodes() {
    let cases: Vec<Model> = vec![
        Model::new(13)
            .input("x", F32, &[1, 4])
            .op("Gemm", &["x", "x"], &["y"], vec![attr_i("transA", 7)])
            .output_any("y", F32),
        Model::new(13)
            .input("x", F32, &[1, 4])
            .op("Softmax", &["x"], &["y"], vec![attr_i("axis", 5)])
            .output_any("y", F32),
        Model::new(13)
            .input("x", F32, &[1, 3, 8, 8])
            .op(
                "MaxPool",
                &["x"],
                &["y"],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_s("auto_pad", "BOGUS"),
                ],
            )
            .output_any("y", F32),
        Model::new(13)
            .input("x", F32, &[1, 3, 8, 8])
            .init(tensor_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0]))
            .op(
                "Resize",
                &["x", "", "s"],
                &["y"],
                vec![attr_s("mode", "lanczos")],
            )
            .output_any("y", F32),
        // Attribute of the wrong type.
        Model::new(13)
            .input("x", F32, &[1, 4])
            .op("Softmax", &["x"], &["y"], vec![attr_f("axis", 1.0)])
            .output_any("y", F32),
        // Reshape shape not constant.
        Model::new(13)
            .input("x", F32, &[2, 3])
            .input("s", I64, &[2])
            .op("Reshape", &["x", "s"], &["y"], vec![])
            .output_any("y", F32),
    ];
    for m in cases {
        match err(&m) {
            ExecError::InvalidNode { node, reason, .. } => {
                assert!(!node.is_empty());
                assert!(!reason.is_empty());
            }
            e => panic!("{e}"),
        }
    }
}

#[test]
fn byte_sizes_that_overflow_are_rejected() {
    let big = 1i64 << 40;
    let m = Model::new(13)
        .input("x", F32, &[big, big, 16])
        .op("Relu", &["x"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::Overflow { .. }));
    // ConstantOfShape asking for a huge constant.
    let m = Model::new(13)
        .input("x", F32, &[1])
        .init(tensor_i64("s", &[2], &[1 << 20, 1 << 20]))
        .op("ConstantOfShape", &["s"], &["c"], vec![])
        .op("Add", &["x", "c"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::Overflow { .. }));
    // Expand output overflowing.
    let m = Model::new(13)
        .input("x", F32, &[1])
        .init(tensor_i64("s", &[3], &[1 << 30, 1 << 30, 1 << 30]))
        .op("Expand", &["x", "s"], &["y"], vec![])
        .output_any("y", F32);
    assert!(matches!(err(&m), ExecError::Overflow { .. }));
}

#[test]
fn open_dimensions_name_the_input() {
    let m = Model::new(13)
        .input_dyn("images", F32, &[None, Some(3)])
        .op("Relu", &["images"], &["y"], vec![])
        .output_any("y", F32);
    match err(&m) {
        ExecError::OpenDimension {
            input, dim, symbol, ..
        } => {
            assert_eq!((input.as_str(), dim, symbol.as_str()), ("images", 0, "N"));
        }
        e => panic!("{e}"),
    }
    // A fixed dimension the override contradicts, and an override for a missing input.
    let bytes = m.bytes();
    let opts = LoadOptions::default().with_input_shape("images", vec![2, 4]);
    let e = ExecutionGraph::from_bytes(&bytes, "corpus", &opts).unwrap_err();
    assert!(matches!(e, ExecError::BadShapeOverride { .. }), "{e}");
    let opts = LoadOptions::default().with_input_shape("other", vec![2, 3]);
    let e = ExecutionGraph::from_bytes(&bytes, "corpus", &opts).unwrap_err();
    assert!(matches!(e, ExecError::BadShapeOverride { .. }), "{e}");
    let opts = LoadOptions::default().with_input_shape("images", vec![2, 3]);
    let g = ExecutionGraph::from_bytes(&bytes, "corpus", &opts).unwrap();
    assert_eq!(g.tensor(g.outputs()[0]).shape, vec![2, 3]);
}

#[test]
fn shape_override_text_is_parsed_and_checked() {
    let m = aegis_exec::parse_input_shapes("x=1,3,640,640; a/b:0=2").unwrap();
    assert_eq!(m["x"], vec![1, 3, 640, 640]);
    assert_eq!(m["a/b:0"], vec![2]);
    assert_eq!(
        aegis_exec::parse_input_shape("s=").unwrap().1,
        Vec::<usize>::new()
    );
    for bad in ["x", "=1,2", "x=1,,2", "x=1,-3", "x=a", "x=1;x=2"] {
        assert!(
            matches!(
                aegis_exec::parse_input_shapes(bad),
                Err(ExecError::BadShapeOverride { .. })
            ),
            "{bad}"
        );
    }
}

fn external_model(location: &str, offset: i64, length: i64) -> Model {
    let mut w = tensor_f32("w", &[4], &[]);
    w.data_location = Some(1);
    w.external_data = vec![
        kv("location", location),
        kv("offset", &offset.to_string()),
        kv("length", &length.to_string()),
    ];
    Model::new(13)
        .input("x", F32, &[4])
        .init(w)
        .op("Add", &["x", "w"], &["y"], vec![])
        .output("y", F32, &[4])
}

fn kv(k: &str, v: &str) -> tract_onnx::pb::StringStringEntryProto {
    tract_onnx::pb::StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    }
}

#[test]
fn external_data_is_read_with_bounds_checks() {
    let dir = std::env::temp_dir().join(format!("aegis-exec-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut payload = vec![0u8; 8];
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.join("weights.bin"), &payload).unwrap();

    // In bounds, loaded from a file next to the data.
    let model_path = dir.join("model.onnx");
    std::fs::write(&model_path, external_model("weights.bin", 8, 16).bytes()).unwrap();
    let g = ExecutionGraph::load(&model_path, &LoadOptions::default()).unwrap();
    let w = g.tensor_by_name("w").unwrap();
    assert_eq!(
        g.constant_data(w).unwrap().as_f32().unwrap(),
        &[1.0, 2.0, 3.0, 4.0]
    );

    let check = |m: Model| {
        std::fs::write(&model_path, m.bytes()).unwrap();
        let e = ExecutionGraph::load(&model_path, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, ExecError::ExternalData { .. }), "{e}");
        assert_eq!(e.category(), ErrorCategory::Permanent);
    };
    check(external_model("weights.bin", 16, 16)); // past the end
    check(external_model("weights.bin", i64::MAX, 16)); // offset + length overflows
    check(external_model("weights.bin", 0, 8)); // length does not fit the shape
    check(external_model("missing.bin", 0, 16));
    check(external_model("../weights.bin", 0, 16)); // escapes the directory
    check(external_model("/etc/passwd", 0, 16));

    // From bytes: needs an explicit directory.
    let bytes = external_model("weights.bin", 8, 16).bytes();
    let e = ExecutionGraph::from_bytes(&bytes, "corpus", &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, ExecError::ExternalData { .. }));
    let opts = LoadOptions {
        external_data_dir: Some(dir.clone()),
        ..LoadOptions::default()
    };
    assert!(ExecutionGraph::from_bytes(&bytes, "corpus", &opts).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_element_types_are_typed_errors() {
    let m = Model::new(13)
        .input("x", 8, &[4]) // string
        .op("Identity", &["x"], &["y"], vec![])
        .output_any("y", 8);
    assert!(matches!(err(&m), ExecError::UnsupportedDType { .. }));
    // The narrow types load, but only Cast, the quantizers and data movement take them.
    let m = Model::new(19)
        .input("x", F8E4M3FN, &[4])
        .op("Relu", &["x"], &["y"], vec![])
        .output_any("y", F8E4M3FN);
    match err(&m) {
        ExecError::ShapeMismatch { reason, .. } => assert!(reason.contains("f8e4m3fn"), "{reason}"),
        e => panic!("{e}"),
    }
    // f64 loads, but an operator without an f64 kernel says so at load: it is never narrowed
    // to f32 behind the caller's back.
    let m = Model::new(13)
        .input("x", 11, &[4]) // double
        .op("Relu", &["x"], &["y"], vec![])
        .output_any("y", 11);
    let e = err(&m);
    assert!(
        matches!(e, ExecError::ShapeMismatch { .. }) && e.to_string().contains("type f64"),
        "{e}"
    );
}

#[test]
fn reading_an_unsupported_optional_output_is_rejected() {
    // Dropout's mask before opset 10 (a float tensor then) is not produced.
    let m = Model::new(9)
        .input("x", F32, &[1, 4])
        .op("Dropout", &["x"], &["y", "mask"], vec![])
        .output_any("mask", F32);
    match err(&m) {
        ExecError::InvalidNode { reason, .. } => assert!(reason.contains("output 1"), "{reason}"),
        e => panic!("{e}"),
    }
}

#[test]
fn a_value_info_contradicting_inference_is_a_shape_mismatch() {
    let mut m = Model::new(13)
        .input("x", F32, &[1, 4])
        .op("Relu", &["x"], &["a"], vec![])
        .op("Relu", &["a"], &["y"], vec![])
        .output("y", F32, &[1, 4]);
    m.graph()
        .value_info
        .push(value_info("a", F32, &fixed(&[4, 1])));
    match err(&m) {
        ExecError::ShapeMismatch { node, .. } => assert_eq!(node, "value_info a"),
        e => panic!("{e}"),
    }
}

/// x[1,3,4,4] f32 -> QuantizeLinear(scale, zero_point) -> y
fn quantize_model(scale: &[f32], zp_elem: i32, zp: &[i32]) -> Model {
    let n = scale.len() as i64;
    let dims: &[i64] = if n == 1 { &[] } else { &[n] };
    Model::new(13)
        .input("x", F32, &[1, 3, 4, 4])
        .init(tensor_f32("s", dims, scale))
        .init(tensor_small_int("z", zp_elem, dims, zp))
        .op(
            "QuantizeLinear",
            &["x", "s", "z"],
            &["y"],
            vec![attr_i("axis", 1)],
        )
        .output_any("y", zp_elem)
}

#[test]
fn quantization_parameters_that_do_not_fit_are_typed_errors() {
    // The base: per-axis parameters over the 3 channels load.
    load(&quantize_model(&[0.5, 1.0, 2.0], U8, &[0, 1, 2])).unwrap();
    // Four scales for three channels.
    match err(&quantize_model(&[0.5, 1.0, 2.0, 4.0], U8, &[0, 1, 2, 3])) {
        ExecError::ShapeMismatch { node, reason, .. } => {
            assert_eq!(node, "QuantizeLinear_y");
            assert!(reason.contains("per-axis scale [4]"), "{reason}");
        }
        e => panic!("{e}"),
    }
    // A zero point whose shape differs from the scale's.
    let mut m = quantize_model(&[0.5, 1.0, 2.0], I8, &[0, 1, 2]);
    m.graph().initializer[1] = tensor_small_int("z", I8, &[2], &[0, 1]);
    assert!(matches!(err(&m), ExecError::ShapeMismatch { .. }));
    // 16-bit quantization (opset 21's types) loads; 4-bit needs the opset that brought it.
    load(&quantize_model(&[0.5], I16, &[0])).unwrap();
    match err(&quantize_model(&[0.5], I4, &[0])) {
        ExecError::ShapeMismatch { reason, .. } => {
            assert!(
                reason.contains("i4 quantization needs opset 21"),
                "{reason}"
            )
        }
        e => panic!("{e}"),
    }
}

#[test]
fn qlinear_conv_with_a_scale_per_wrong_channel_count_is_a_typed_error() {
    let m = Model::new(13)
        .input("x", U8, &[1, 2, 5, 5])
        .init(tensor_f32("xs", &[], &[0.1]))
        .init(tensor_small_int("xz", U8, &[], &[128]))
        .init(tensor_small_int("w", I8, &[4, 2, 3, 3], &[1; 72]))
        .init(tensor_f32("ws", &[3], &[0.1, 0.2, 0.3]))
        .init(tensor_small_int("wz", I8, &[], &[0]))
        .init(tensor_f32("ys", &[], &[0.5]))
        .init(tensor_small_int("yz", U8, &[], &[0]))
        .op(
            "QLinearConv",
            &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
            &["y"],
            vec![],
        )
        .output_any("y", U8);
    match err(&m) {
        ExecError::ShapeMismatch { reason, .. } => {
            assert!(
                reason.contains("w_scale [3] must have 1 or 4 elements"),
                "{reason}"
            )
        }
        e => panic!("{e}"),
    }
}

#[test]
fn malformed_control_flow_is_rejected_with_the_node_named() {
    let branch = |op: &str| {
        Model::new(13)
            .op(op, &["x"], &["t"], vec![])
            .output_any("t", F32)
    };
    let graph_attr = |name: &str, m: Model| tract_onnx::pb::AttributeProto {
        name: name.into(),
        r#type: 5,
        g: m.proto.graph,
        ..Default::default()
    };
    let if_model = |cond: tract_onnx::pb::TensorProto, attrs| {
        Model::new(13)
            .input("x", F32, &[2])
            .init(cond)
            .node(node("If", "choose", &["c"], &["y"], attrs))
            .output_any("y", F32)
    };
    let yes = || tensor_small_int("c", BOOL, &[], &[1]);
    // The taken branch is missing.
    let e = err(&if_model(
        yes(),
        vec![graph_attr("else_branch", branch("Relu"))],
    ));
    assert!(
        e.to_string().contains("then_branch (a graph) is missing"),
        "{e}"
    );
    // A condition that is not one bool.
    let e = err(&if_model(
        tensor_i64("c", &[2], &[1, 0]),
        vec![
            graph_attr("then_branch", branch("Relu")),
            graph_attr("else_branch", branch("Relu")),
        ],
    ));
    assert!(e.to_string().contains("cond must be one bool"), "{e}");
    // A branch reading a name nothing defines.
    let stray = Model::new(13)
        .op("Add", &["x", "nowhere"], &["t"], vec![])
        .output_any("t", F32);
    let e = err(&if_model(
        yes(),
        vec![
            graph_attr("then_branch", stray),
            graph_attr("else_branch", branch("Relu")),
        ],
    ));
    assert!(e.to_string().contains("nowhere"), "{e}");
    // A Loop whose body has the wrong number of inputs, and one without a body.
    let loop_model = |attrs| {
        Model::new(13)
            .input("x", F32, &[2])
            .init(tensor_i64("n", &[], &[2]))
            .node(node("Loop", "repeat", &["n", "", "x"], &["y"], attrs))
            .output_any("y", F32)
    };
    let e = err(&loop_model(vec![graph_attr("body", branch("Relu"))]));
    assert!(
        e.to_string().contains("repeat") && e.to_string().contains("carried"),
        "{e}"
    );
    let e = err(&loop_model(vec![]));
    assert!(e.to_string().contains("body (a graph) is missing"), "{e}");
}

/// Q [1, 2, 8] (2 heads of 4), K and V [1, 3, 8], and an optional mask.
fn attention_model(
    attrs: Vec<tract_onnx::pb::AttributeProto>,
    mask: Option<(i32, &[i64])>,
) -> Model {
    let mut m = Model::new(23)
        .input("q", F32, &[1, 2, 8])
        .input("k", F32, &[1, 3, 8])
        .input("v", F32, &[1, 3, 8]);
    let mut ins = vec!["q", "k", "v"];
    if let Some((t, dims)) = mask {
        m = m.input("mask", t, dims);
        ins.push("mask");
    }
    m.op("Attention", &ins, &["y"], attrs)
        .output("y", F32, &[1, 2, 8])
}

#[test]
fn attention_inputs_that_do_not_fit_are_typed_errors() {
    let heads = || vec![attr_i("q_num_heads", 2), attr_i("kv_num_heads", 2)];
    load(&attention_model(heads(), Some((BOOL, &[2, 3])))).unwrap();
    let reason = |m: &Model| match err(m) {
        ExecError::InvalidNode { reason, .. } | ExecError::ShapeMismatch { reason, .. } => reason,
        e => panic!("{e}"),
    };
    // 3-D inputs without the head counts.
    let r = reason(&attention_model(vec![], None));
    assert!(r.contains("q_num_heads and kv_num_heads"), "{r}");
    // Three query heads do not split a hidden size of 8.
    let r = reason(&attention_model(
        vec![attr_i("q_num_heads", 3), attr_i("kv_num_heads", 2)],
        None,
    ));
    assert!(r.contains("not a multiple of 3 heads"), "{r}");
    // A mask over 4 keys where there are 3.
    let r = reason(&attention_model(heads(), Some((BOOL, &[2, 4]))));
    assert!(r.contains("does not broadcast to [1, 2, 2, 3]"), "{r}");
    // An integer mask.
    let r = reason(&attention_model(heads(), Some((I32, &[2, 3]))));
    assert!(r.contains("bool or float masks"), "{r}");
    // Mode 4 of qk_matmul_output does not exist.
    let mut attrs = heads();
    attrs.push(attr_i("qk_matmul_output_mode", 4));
    let r = reason(&attention_model(attrs, None));
    assert!(r.contains("qk_matmul_output_mode must be 0 to 3"), "{r}");
}

#[test]
fn narrow_types_that_do_not_fit_are_typed_errors() {
    let reason = |m: &Model| match err(m) {
        ExecError::InvalidNode { reason, .. } | ExecError::ShapeMismatch { reason, .. } => reason,
        e => panic!("{e}"),
    };
    // Five INT4 values need three packed bytes, not two.
    let short = Model::new(21)
        .input("x", F32, &[5])
        .init(tensor_raw("w", I4, &[5], &[0x12, 0x34]))
        .init(tensor_f32("s", &[], &[1.0]))
        .op("DequantizeLinear", &["w", "s"], &["wf"], vec![])
        .op("Add", &["x", "wf"], &["y"], vec![])
        .output_any("y", F32);
    let r = reason(&short);
    assert!(r.contains("needs 5 i4 elements"), "{r}");
    // An 8-bit float zero point must be zero.
    let zp = Model::new(21)
        .input("x", F32, &[2])
        .init(tensor_f32("s", &[], &[1.0]))
        .init(tensor_raw("z", F8E4M3FN, &[], &[0x38]))
        .op("QuantizeLinear", &["x", "s", "z"], &["q"], vec![])
        .output_any("q", F8E4M3FN);
    let r = reason(&zp);
    assert!(r.contains("f8e4m3fn zero point must be zero"), "{r}");
    // Cast's round_mode names one of three modes.
    let cast = Model::new(24)
        .input("x", F32, &[2])
        .op(
            "Cast",
            &["x"],
            &["y"],
            vec![attr_i("to", 24), attr_s("round_mode", "sideways")],
        )
        .output_any("y", 24);
    let r = reason(&cast);
    assert!(r.contains("round_mode 'sideways'"), "{r}");
    // Codes are not values: Equal on an 8-bit float is refused, not compared bytewise.
    let eq = Model::new(21)
        .input("a", F8E4M3FN, &[2])
        .input("b", F8E4M3FN, &[2])
        .op("Equal", &["a", "b"], &["y"], vec![])
        .output_any("y", BOOL);
    let r = reason(&eq);
    assert!(r.contains("Equal does not take f8e4m3fn"), "{r}");
}
