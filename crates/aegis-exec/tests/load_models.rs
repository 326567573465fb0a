//! Every shared model loads; counts, output shapes (against meta.json) and the memory plan are
//! checked. The models live in ../shared/models (read-only).

use std::path::{Path, PathBuf};

use aegis_exec::{ExecutionGraph, LoadOptions, TensorKind};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn model_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .expect("shared models directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    v.sort();
    v
}

/// Input shapes from meta.json: the models with dynamic dims get them fixed from there.
fn options_for(meta: &serde_json::Value) -> LoadOptions {
    let mut opts = LoadOptions::default();
    for inp in meta["inputs"].as_array().expect("inputs") {
        let name = inp["name"].as_str().expect("name");
        let shape: Vec<usize> = inp["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        if meta["static"] == serde_json::Value::Bool(false) {
            opts = opts.with_input_shape(name, shape);
        }
    }
    opts
}

#[test]
fn every_shared_model_loads_with_meta_shapes_and_a_valid_plan() {
    let dirs = model_dirs();
    assert!(
        dirs.len() >= 15,
        "expected the shared models, found {}",
        dirs.len()
    );
    for d in dirs {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
        let g = ExecutionGraph::load(d.join("model.onnx"), &options_for(&meta))
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        assert!(!g.operators().is_empty(), "{}", d.display());
        assert!(g.tensors().len() > g.operators().len(), "{}", d.display());
        assert_eq!(g.topological_order().len(), g.operators().len());

        // Inputs and outputs match meta.json by name and shape.
        let metas_in = meta["inputs"].as_array().unwrap();
        assert_eq!(g.inputs().len(), metas_in.len(), "{}", d.display());
        let metas_out = meta["outputs"].as_array().unwrap();
        assert_eq!(g.outputs().len(), metas_out.len(), "{}", d.display());
        for (&id, m) in g.outputs().iter().zip(metas_out) {
            let t = g.tensor(id);
            let want: Vec<usize> = m["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.name, m["name"].as_str().unwrap(), "{}", d.display());
            assert_eq!(t.shape, want, "{} output {}", d.display(), t.name);
            assert_eq!(t.kind, TensorKind::Output);
        }

        // The plan covers exactly the non-constant tensors, is valid, and sits between the
        // lower bound and the naive sum.
        let plan = g.plan();
        plan.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for (i, t) in g.tensors().iter().enumerate() {
            let planned = plan.offset_of(i).is_some();
            assert_eq!(
                planned,
                t.kind != TensorKind::Constant,
                "{} {}",
                d.display(),
                t.name
            );
            assert_eq!(g.constant_data(aegis_exec_id(&g, i)).is_some(), !planned);
        }
        assert!(plan.peak_bytes >= plan.lower_bound_bytes);
        assert!(plan.peak_bytes <= plan.naive_bytes);
        assert!(plan.lower_bound_bytes > 0);

        // The order is topological: every input is produced earlier.
        let mut done = vec![false; g.operators().len()];
        for &n in g.topological_order() {
            for &t in &g.node(n).inputs {
                if let Some(p) = g.producer(t) {
                    assert!(done[p.index()], "{}: order not topological", d.display());
                }
            }
            done[n.index()] = true;
        }
    }
}

fn aegis_exec_id(g: &ExecutionGraph, i: usize) -> aegis_exec::TensorId {
    g.tensor_by_name(&g.tensors()[i].name).unwrap()
}

#[test]
fn loading_is_deterministic() {
    let path = models_dir().join("tv-transformer_encoder_2l/model.onnx");
    let a = ExecutionGraph::load(&path, &LoadOptions::default()).unwrap();
    let b = ExecutionGraph::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(a.topological_order(), b.topological_order());
    assert_eq!(a.tensors(), b.tensors());
    assert_eq!(a.operators(), b.operators());
    assert_eq!(a.plan(), b.plan());
}

#[test]
fn from_bytes_matches_load() {
    let path = models_dir().join("tv-squeezenet1_1/model.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let a = ExecutionGraph::load(&path, &LoadOptions::default()).unwrap();
    let b = ExecutionGraph::from_bytes(&bytes, "squeezenet", &LoadOptions::default()).unwrap();
    assert_eq!(a.operators(), b.operators());
    assert_eq!(b.name(), "squeezenet");
}

#[test]
fn dynamic_batch_needs_an_override() {
    let path = models_dir().join("ppocr-mobile-v2-cls/model.onnx");
    let err = ExecutionGraph::load(&path, &LoadOptions::default()).unwrap_err();
    match &err {
        aegis_exec::ExecError::OpenDimension { input, dim, .. } => {
            assert_eq!(input, "x");
            assert_eq!(*dim, 0);
        }
        other => panic!("unexpected {other}"),
    }
    let opts = LoadOptions::default()
        .with_input_shapes_str("x=2,3,48,192")
        .unwrap();
    let g = ExecutionGraph::load(&path, &opts).unwrap();
    assert_eq!(g.tensor(g.outputs()[0]).shape, vec![2, 2]);
}

#[test]
fn batch_norms_are_folded_into_convs() {
    // torchvision exports keep BN folded already; the caffe2-derived light models have
    // explicit BatchNormalization after Conv.
    for name in ["light-resnet50", "light-inception_v2", "light-densenet121"] {
        let g = ExecutionGraph::load(
            models_dir().join(name).join("model.onnx"),
            &LoadOptions::default(),
        )
        .unwrap();
        let h = g.op_histogram();
        let convs = h.get("Conv").copied().unwrap_or(0);
        let bns = h.get("BatchNormalization").copied().unwrap_or(0);
        assert!(convs > 0);
        // Every BN that directly follows a single-use Conv is gone.
        for n in g.operators() {
            if let aegis_exec::Op::BatchNormalization { .. } = n.op {
                if let Some(p) = g.producer(n.inputs[0]) {
                    assert!(
                        !matches!(g.node(p).op, aegis_exec::Op::Conv { .. })
                            || g.consumers(n.inputs[0]).len() > 1,
                        "{name}: BN {} after Conv not folded",
                        n.name
                    );
                }
            }
        }
        eprintln!("{name}: {convs} Conv, {bns} BatchNormalization left");
    }
}

/// The exporters' own `value_info` shapes are checked against our inference at load. The
/// plain models carry none; ppocr's `model_static.onnx` (onnx shape inference with data
/// propagation baked in) declares hundreds, so loading it checks our inference against
/// onnx's, intermediate by intermediate.
#[test]
fn our_inference_agrees_with_onnx_declared_intermediate_shapes() {
    use prost::Message;
    let path = models_dir().join("ppocr-mobile-v2-cls/model_static.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let declared = proto.graph.map_or(0, |g| g.value_info.len());
    assert!(declared > 100, "{declared}");
    let g = ExecutionGraph::load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.tensor(g.outputs()[0]).shape, vec![1, 2]);
    eprintln!("value_info entries cross-checked: {declared}");
}

/// Concatenations cost nothing where the plan can place their parts: every part of every
/// Concat in SqueezeNet is produced straight into its place (its parts are whole multiples of
/// the 256-byte alignment), and most of Inception's and DenseNet's (chained, block by block);
/// a part of, e.g., 32x27x27 floats would put the next one off the alignment.
#[test]
fn concat_parts_are_planned_in_place_in_the_shared_models() {
    for (name, all) in [
        ("light-squeezenet", true),
        ("light-inception_v1", false),
        ("light-densenet121", false),
    ] {
        let g = ExecutionGraph::load(
            models_dir().join(name).join("model.onnx"),
            &LoadOptions::default(),
        )
        .unwrap();
        let plan = g.plan();
        plan.validate().unwrap();
        let (mut parts, mut nested) = (0, 0);
        for node in g.operators() {
            if !matches!(node.op, aegis_exec::Op::Concat { .. }) {
                continue;
            }
            let out = plan.offset_of(node.outputs[0].index()).unwrap();
            let mut at = 0;
            for &t in &node.inputs {
                parts += 1;
                if plan.offset_of(t.index()) == Some(out + at) {
                    nested += 1;
                }
                at += g.tensor(t).byte_size;
            }
        }
        assert!(parts > 0, "{name}");
        if all {
            assert_eq!(nested, parts, "{name}");
        } else {
            assert!(nested * 4 >= parts * 3, "{name}: {nested} of {parts}");
        }
        assert_eq!(plan.nested.len(), nested, "{name}");
    }
}
