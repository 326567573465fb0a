//! Builds small ONNX models in test code (prost structures from `tract_onnx::pb`), so the
//! malformed-model corpus is readable and reproducible rather than opaque binary files.
#![allow(dead_code)]

use prost::Message;
use tract_onnx::pb;

pub const F32: i32 = 1;
pub const I32: i32 = 6;
pub const I64: i32 = 7;
pub const BOOL: i32 = 9;
pub const U8: i32 = 2;
pub const I8: i32 = 3;
pub const I16: i32 = 5;
pub const F8E4M3FN: i32 = 17;
pub const I4: i32 = 22;

#[derive(Debug, Clone)]
pub struct Model {
    pub proto: pb::ModelProto,
}

pub fn attr_i(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}

pub fn attr_f(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 1,
        f: v,
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_floats(name: &str, v: &[f32]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 6,
        floats: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_s(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 3,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn attr_t(name: &str, t: pb::TensorProto) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 4,
        t: Some(t),
        ..Default::default()
    }
}

/// A graph attribute (an `If` branch): the graph of `m`.
pub fn attr_g(name: &str, m: Model) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 5,
        g: m.proto.graph,
        ..Default::default()
    }
}

pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: F32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: I64,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

/// An 8- or 16-bit integer tensor (`elem` U8, I8 or I16), stored one value per int32 as ONNX
/// does when not in raw_data.
pub fn tensor_small_int(name: &str, elem: i32, dims: &[i64], data: &[i32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem,
        int32_data: data.to_vec(),
        ..Default::default()
    }
}

/// A tensor of any element type from its bytes as stored in `raw_data` (packed for the 4- and
/// 2-bit types).
pub fn tensor_raw(name: &str, elem: i32, dims: &[i64], raw: &[u8]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem,
        raw_data: raw.to_vec(),
        ..Default::default()
    }
}

/// A value info; `None` dims are symbolic (`N`).
pub fn value_info(name: &str, elem: i32, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            denotation: String::new(),
                            value: Some(match d {
                                Some(v) => D::DimValue(*v),
                                None => D::DimParam("N".into()),
                            }),
                        })
                        .collect(),
                }),
            })),
        }),
        ..Default::default()
    }
}

pub fn fixed(dims: &[i64]) -> Vec<Option<i64>> {
    dims.iter().map(|&d| Some(d)).collect()
}

pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

impl Model {
    pub fn new(opset: i64) -> Self {
        Self {
            proto: pb::ModelProto {
                ir_version: 8,
                opset_import: vec![pb::OperatorSetIdProto {
                    domain: String::new(),
                    version: opset,
                }],
                graph: Some(pb::GraphProto {
                    name: "test".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    pub fn graph(&mut self) -> &mut pb::GraphProto {
        self.proto.graph.get_or_insert_with(Default::default)
    }

    pub fn input(mut self, name: &str, elem: i32, dims: &[i64]) -> Self {
        self.graph()
            .input
            .push(value_info(name, elem, &fixed(dims)));
        self
    }

    pub fn input_dyn(mut self, name: &str, elem: i32, dims: &[Option<i64>]) -> Self {
        self.graph().input.push(value_info(name, elem, dims));
        self
    }

    pub fn output(mut self, name: &str, elem: i32, dims: &[i64]) -> Self {
        self.graph()
            .output
            .push(value_info(name, elem, &fixed(dims)));
        self
    }

    /// An output with no declared shape.
    pub fn output_any(mut self, name: &str, elem: i32) -> Self {
        let mut v = value_info(name, elem, &[]);
        if let Some(pb::type_proto::Value::TensorType(t)) =
            v.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = None;
        }
        self.graph().output.push(v);
        self
    }

    pub fn init(mut self, t: pb::TensorProto) -> Self {
        self.graph().initializer.push(t);
        self
    }

    pub fn node(mut self, n: pb::NodeProto) -> Self {
        self.graph().node.push(n);
        self
    }

    pub fn op(
        self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> Self {
        let name = format!("{op}_{}", outputs.first().copied().unwrap_or(""));
        self.node(node(op, &name, inputs, outputs, attrs))
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }
}
