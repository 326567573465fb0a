//! Opsets 1 to 6: each supported operator's early versions, rewritten into the form it has at
//! opset 7 before the node is parsed.
//!
//! Why: the ONNX model zoo still ships its classic CNNs exported at opsets 3 and 6 (caffe2
//! conversions of AlexNet, GoogLeNet, ResNet, SqueezeNet, VGG ...), and most of their
//! operators mean the same at opset 1 as at opset 7. Where they do not, the difference is
//! an attribute this module translates, or a typed error:
//! - the arithmetic, comparison and logic operators broadcast only with `broadcast = 1`, `B`
//!   aligned with `A` from `axis` (default: `B`'s shape is a suffix of `A`'s); `B` is
//!   reshaped so numpy broadcasting lines it up the same way (a constant is re-viewed, a
//!   tensor goes through a `Reshape`); without `broadcast`, the shapes must be equal;
//! - `BatchNormalization` and `Dropout` run in training mode unless `is_test = 1`: training
//!   mode is refused (an inference runtime has no batch statistics nor random masks);
//! - `Reshape` (before opset 5) takes its shape as an attribute, `Concat` (before 4) defaults
//!   to axis 1, `Pad` (opset 1) names its pads `paddings`, `Cast` (before 6) names its target
//!   type as a string, `Split` (opset 1) may take its split as a second input (refused);
//! - `consumed_inputs` (an in-place hint) and `Gemm`'s `broadcast` are dropped.
//!
//! `ImageScaler` (experimental in opsets 1 to 9, Tiny YOLOv2's first node:
//! `scale * x + bias[c]`) is rewritten at any opset up to 9 into a `BatchNormalization` with
//! mean 0, variance 1 and epsilon 0, which computes exactly `scale * x + bias[c]`.
//!
//! Operators whose first version differs in ways not listed here (`Upsample`'s experimental
//! version, `Tile` before opset 6, the recurrent cells before 7 ...) are not in [`LEGACY`]:
//! at opsets below 7 they are reported as unsupported.

use std::sync::Arc;

use tract_onnx::pb::{self, AttributeProto, NodeProto};

use super::{Loader, Pending, Value};
use crate::error::ExecError;
use crate::graph::{DType, Op, TensorData};

/// Operators accepted at opsets 1 to 6, with the opset that introduced them.
pub(crate) const LEGACY: &[(&str, i64)] = &[
    ("Abs", 1),
    ("Add", 1),
    ("And", 1),
    ("ArgMax", 1),
    ("ArgMin", 1),
    ("AveragePool", 1),
    ("BatchNormalization", 1),
    ("Cast", 1),
    ("Ceil", 1),
    ("Clip", 1),
    ("Concat", 1),
    ("Constant", 1),
    ("Conv", 1),
    ("ConvTranspose", 1),
    ("DepthToSpace", 1),
    ("Div", 1),
    ("Dropout", 1),
    ("Elu", 1),
    ("Equal", 1),
    ("Exp", 1),
    ("Flatten", 1),
    ("Floor", 1),
    ("Gather", 1),
    ("Gemm", 1),
    ("GlobalAveragePool", 1),
    ("GlobalLpPool", 2),
    ("GlobalMaxPool", 1),
    ("Greater", 1),
    ("HardSigmoid", 1),
    ("Hardmax", 1),
    ("Identity", 1),
    ("ImageScaler", 1),
    ("InstanceNormalization", 1),
    ("LRN", 1),
    ("LeakyRelu", 1),
    ("Less", 1),
    ("Log", 1),
    ("LogSoftmax", 1),
    ("LpNormalization", 1),
    ("LpPool", 2),
    ("MatMul", 1),
    ("Max", 1),
    ("MaxPool", 1),
    ("Mean", 1),
    ("Min", 1),
    ("Mul", 1),
    ("Neg", 1),
    ("Not", 1),
    ("Or", 1),
    ("Pad", 1),
    ("Pow", 1),
    ("Reciprocal", 1),
    ("ReduceL1", 1),
    ("ReduceL2", 1),
    ("ReduceLogSum", 1),
    ("ReduceLogSumExp", 1),
    ("ReduceMax", 1),
    ("ReduceMean", 1),
    ("ReduceMin", 1),
    ("ReduceProd", 1),
    ("ReduceSum", 1),
    ("ReduceSumSquare", 1),
    ("Relu", 1),
    ("Reshape", 1),
    ("Selu", 1),
    ("Shape", 1),
    ("Sigmoid", 1),
    ("Size", 1),
    ("Slice", 1),
    ("Softmax", 1),
    ("Softplus", 1),
    ("Softsign", 1),
    ("SpaceToDepth", 1),
    ("Split", 1),
    ("Sqrt", 1),
    ("Squeeze", 1),
    ("Sub", 1),
    ("Sum", 1),
    ("Tanh", 1),
    ("Tile", 6),
    ("TopK", 1),
    ("Transpose", 1),
    ("Unsqueeze", 1),
    ("Xor", 1),
];

/// Whether `op_type` is supported at `opset` (below 7).
pub(crate) fn is_supported(op_type: &str, opset: i64) -> bool {
    LEGACY
        .iter()
        .any(|&(name, since)| name == op_type && opset >= since)
}

/// Operators whose versions before 7 broadcast only with `broadcast = 1` (and `axis`).
const AXIS_BROADCAST: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less",
];

/// ONNX element type codes by the names `Cast` used before opset 6.
const CAST_NAMES: &[(&str, i32)] = &[
    ("FLOAT", 1),
    ("UINT8", 2),
    ("INT8", 3),
    ("UINT16", 4),
    ("INT16", 5),
    ("INT32", 6),
    ("INT64", 7),
    ("STRING", 8),
    ("BOOL", 9),
    ("FLOAT16", 10),
    ("DOUBLE", 11),
    ("UINT32", 12),
    ("UINT64", 13),
];

fn take_attr(n: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let i = n.attribute.iter().position(|a| a.name == name)?;
    Some(n.attribute.remove(i))
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

impl Loader<'_> {
    /// `ImageScaler` as a `BatchNormalization` (see the module doc).
    pub(super) fn image_scaler(
        &mut self,
        n: &NodeProto,
        name: &str,
    ) -> Result<NodeProto, ExecError> {
        let op = "ImageScaler";
        if self.opset >= 10 {
            return Err(self.legacy_error(
                name,
                op,
                "removed from the standard at opset 10".into(),
            ));
        }
        let x = n
            .input
            .first()
            .and_then(|i| self.values.get(&self.resolve(i)))
            .filter(|v| v.dtype == DType::F32 && v.rank() >= 2)
            .ok_or_else(|| {
                self.legacy_error(name, op, "input 0 must be an f32 tensor [N, C, ...]".into())
            })?;
        let c = x.shape[1];
        let scale = n
            .attribute
            .iter()
            .find(|a| a.name == "scale")
            .map_or(1.0, |a| a.f);
        let bias = n
            .attribute
            .iter()
            .find(|a| a.name == "bias")
            .map(|a| a.floats.clone())
            .unwrap_or_else(|| vec![0.0; c]);
        if bias.len() != c {
            return Err(self.legacy_error(
                name,
                op,
                format!("bias has {} values for {c} channels", bias.len()),
            ));
        }
        let mut inputs = vec![n.input[0].clone()];
        for (tag, data) in [
            ("scale", vec![scale; c]),
            ("bias", bias),
            ("mean", vec![0.0; c]),
            ("var", vec![1.0; c]),
        ] {
            let value = format!("{name}:{tag}");
            self.values.insert(
                value.clone(),
                Value {
                    dtype: DType::F32,
                    shape: vec![c],
                    konst: Some(Arc::new(TensorData::F32(data))),
                },
            );
            inputs.push(value);
        }
        let mut eps = int_attr("epsilon", 0);
        eps.r#type = pb::attribute_proto::AttributeType::Float as i32;
        eps.f = 0.0;
        Ok(NodeProto {
            op_type: "BatchNormalization".into(),
            name: n.name.clone(),
            input: inputs,
            output: n.output.clone(),
            attribute: if self.opset < 7 {
                vec![int_attr("is_test", 1), eps]
            } else {
                vec![eps]
            },
            ..Default::default()
        })
    }

    fn legacy_error(&self, name: &str, op: &str, reason: String) -> ExecError {
        ExecError::InvalidNode {
            model: self.model.to_owned(),
            node: name.to_owned(),
            reason: format!("{op} (opset {}): {reason}", self.opset),
        }
    }

    /// `n` rewritten into its opset-7 form (see the module doc). Only called below opset 7.
    pub(super) fn legacy_node(
        &mut self,
        n: &NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<NodeProto, ExecError> {
        let op = n.op_type.as_str();
        let mut m = n.clone();
        take_attr(&mut m, "consumed_inputs");
        match op {
            _ if AXIS_BROADCAST.contains(&op) => self.legacy_broadcast(&mut m, file_index, name)?,
            "Gemm" => {
                // C broadcasts to [M, N] as it does from opset 7 on (with `broadcast = 0` it
                // had to be [M, N] already, which broadcasting accepts too).
                take_attr(&mut m, "broadcast");
            }
            "BatchNormalization" | "Dropout" => {
                let is_test = take_attr(&mut m, "is_test").map_or(0, |a| a.i);
                if is_test == 0 {
                    return Err(self.legacy_error(
                        name,
                        op,
                        "is_test = 0 asks for training mode; inference runs test mode only \
                         (export with is_test = 1)"
                            .into(),
                    ));
                }
                if op == "Dropout" {
                    // Test-mode Dropout is the identity whatever its ratio.
                    m.attribute.clear();
                }
            }
            "Reshape" if self.opset < 5 => {
                let shape = take_attr(&mut m, "shape")
                    .ok_or_else(|| self.legacy_error(name, op, "no 'shape' attribute".into()))?;
                let value = format!("{name}:shape");
                self.values.insert(
                    value.clone(),
                    Value {
                        dtype: DType::I64,
                        shape: vec![shape.ints.len()],
                        konst: Some(Arc::new(TensorData::I64(shape.ints.clone()))),
                    },
                );
                m.input.truncate(1);
                m.input.push(value);
            }
            "Concat" if self.opset < 4 && !m.attribute.iter().any(|a| a.name == "axis") => {
                m.attribute.push(int_attr("axis", 1));
            }
            "Pad" if self.opset < 2 => {
                if let Some(mut p) = take_attr(&mut m, "paddings") {
                    p.name = "pads".into();
                    m.attribute.push(p);
                }
            }
            "Cast" if self.opset < 6 => {
                if let Some(mut to) = take_attr(&mut m, "to") {
                    if to.ints.is_empty() && !to.s.is_empty() {
                        let text = String::from_utf8_lossy(&to.s).to_ascii_uppercase();
                        let code = CAST_NAMES
                            .iter()
                            .find(|&&(k, _)| k == text)
                            .map(|&(_, c)| c)
                            .ok_or_else(|| {
                                self.legacy_error(name, op, format!("unknown type '{text}'"))
                            })?;
                        to = int_attr("to", i64::from(code));
                    }
                    m.attribute.push(to);
                }
            }
            "Split" if self.opset < 2 && m.input.len() > 1 => {
                return Err(self.legacy_error(
                    name,
                    op,
                    "the split sizes as a second input are not supported (use the 'split' \
                     attribute)"
                        .into(),
                ));
            }
            _ => {}
        }
        Ok(m)
    }

    /// `A op B` with the pre-7 broadcast attributes turned into numpy broadcasting.
    fn legacy_broadcast(
        &mut self,
        m: &mut NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<(), ExecError> {
        let op = m.op_type.clone();
        let broadcast = take_attr(m, "broadcast").map_or(0, |a| a.i);
        let axis = take_attr(m, "axis").map(|a| a.i);
        if m.input.len() != 2 {
            return Ok(()); // The parser reports the arity.
        }
        let (a_name, b_name) = (self.resolve(&m.input[0]), self.resolve(&m.input[1]));
        let (Some(a), Some(b)) = (self.values.get(&a_name), self.values.get(&b_name)) else {
            return Ok(()); // The parser reports the missing operand.
        };
        let (ra, rb) = (a.rank(), b.rank());
        if broadcast == 0 {
            if a.shape != b.shape {
                return Err(self.legacy_error(
                    name,
                    &op,
                    format!(
                        "without broadcast = 1 the operands must have equal shapes, got {:?} \
                         and {:?}",
                        a.shape, b.shape
                    ),
                ));
            }
            return Ok(());
        }
        let start = match axis {
            None => ra.checked_sub(rb),
            Some(ax) => usize::try_from(ax).ok().filter(|&ax| ax + rb <= ra),
        };
        let fits = start.is_some_and(|s| {
            b.shape
                .iter()
                .zip(&a.shape[s..])
                .all(|(&db, &da)| db == da || db == 1)
        });
        let Some(start) = start.filter(|_| fits) else {
            return Err(self.legacy_error(
                name,
                &op,
                format!(
                    "B of shape {:?} does not broadcast onto A of shape {:?} from axis {}",
                    b.shape,
                    a.shape,
                    axis.map_or_else(|| "(suffix)".to_owned(), |x| x.to_string())
                ),
            ));
        };
        let trailing = ra - start - rb;
        if trailing == 0 {
            return Ok(()); // Already aligned on the suffix, as numpy aligns.
        }
        let mut shape = b.shape.clone();
        shape.extend(std::iter::repeat_n(1, trailing));
        let aligned = format!("{b_name}:axis{start}_rank{ra}");
        if !self.values.contains_key(&aligned) {
            let (dtype, konst) = (b.dtype, b.konst.clone());
            if konst.is_none() {
                self.pending.push(Pending {
                    file_index,
                    name: format!("{name}:align_b"),
                    op: Op::Reshape {
                        shape: shape.clone(),
                    },
                    inputs: vec![b_name],
                    outputs: vec![aligned.clone()],
                });
            }
            // A constant keeps its data: only the view of its shape changes.
            self.values.insert(
                aligned.clone(),
                Value {
                    dtype,
                    shape,
                    konst,
                },
            );
        }
        m.input[1] = aligned;
        Ok(())
    }
}
