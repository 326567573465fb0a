//! Per-operator parsing, validation, defaulting and shape/dtype inference, following the ONNX
//! specification of each operator for opsets 7 to 28 (earlier opsets' nodes arrive rewritten
//! into their opset-7 forms by `legacy`).

use crate::error::ExecError;
use crate::graph::{DType, Op, TensorData};
use crate::kernels::{
    AttentionSpec, Col2ImSpec, DeformSpec, DftSpec, E8M0Round, LossReduction, Narrow, NarrowMode,
    QuantLayout, RoiAlignSpec, RotarySpec, StftSpec,
};
use crate::loader::node::{Inferred, NodeCtx, Value};
use crate::loader::op::{
    BitwiseKind, CompareKind, CoordinateTransform, GeluApproximation, GridPaddingMode, LogicKind,
    MathFn, NearestMode, PadMode, ReduceKind, ResizeMode, ScatterReduce,
};
use crate::loader::tensor::checked_numel;

/// Supported default-domain operators and the opset that introduced each (7 = "before our
/// range").
pub(crate) const SUPPORTED: &[(&str, i64)] = &[
    ("Abs", 7),
    ("Acos", 7),
    ("Acosh", 9),
    ("Add", 7),
    ("AffineGrid", 20),
    ("And", 7),
    ("ArgMax", 7),
    ("ArgMin", 7),
    ("Asin", 7),
    ("Asinh", 9),
    ("Atan", 7),
    ("Atanh", 9),
    ("Attention", 23),
    ("AveragePool", 7),
    ("BatchNormalization", 7),
    ("BitCast", 26),
    ("BitShift", 11),
    ("BitwiseAnd", 18),
    ("BitwiseNot", 18),
    ("BitwiseOr", 18),
    ("BitwiseXor", 18),
    ("BlackmanWindow", 17),
    ("Cast", 7),
    ("CastLike", 15),
    ("Ceil", 7),
    ("Celu", 12),
    ("CenterCropPad", 18),
    ("Clip", 7),
    ("Col2Im", 18),
    ("Concat", 7),
    ("Constant", 7),
    ("ConstantOfShape", 9),
    ("Conv", 7),
    ("ConvInteger", 10),
    ("ConvTranspose", 7),
    ("Cos", 7),
    ("Cosh", 9),
    ("CumProd", 26),
    ("CumSum", 11),
    ("DFT", 17),
    ("DeformConv", 19),
    ("DepthToSpace", 7),
    ("DequantizeLinear", 10),
    ("Det", 11),
    ("Div", 7),
    ("Dropout", 7),
    ("DynamicQuantizeLinear", 11),
    ("Einsum", 12),
    ("Elu", 7),
    ("Equal", 7),
    ("Erf", 9),
    ("Exp", 7),
    ("Expand", 8),
    ("EyeLike", 9),
    ("Flatten", 7),
    ("Floor", 7),
    ("GRU", 7),
    ("Gather", 7),
    ("GatherElements", 11),
    ("GatherND", 11),
    ("Gelu", 20),
    ("Gemm", 7),
    ("GlobalAveragePool", 7),
    ("GlobalLpPool", 7),
    ("GlobalMaxPool", 7),
    ("Greater", 7),
    ("GreaterOrEqual", 12),
    ("GridSample", 16),
    ("GroupNormalization", 18),
    ("HammingWindow", 17),
    ("HannWindow", 17),
    ("HardSigmoid", 7),
    ("HardSwish", 14),
    ("Hardmax", 7),
    ("Identity", 7),
    // Experimental in opsets 1 to 9; read as a BatchNormalization (`legacy::image_scaler`).
    ("ImageScaler", 7),
    ("If", 7),
    ("InstanceNormalization", 7),
    ("IsInf", 10),
    ("IsNaN", 9),
    ("LRN", 7),
    ("LpNormalization", 7),
    ("LSTM", 7),
    ("LayerNormalization", 17),
    ("LeakyRelu", 7),
    ("Less", 7),
    ("LessOrEqual", 12),
    ("Log", 7),
    ("LogSoftmax", 7),
    ("Loop", 7),
    ("LpPool", 7),
    ("MatMul", 7),
    ("MatMulInteger", 10),
    ("Max", 7),
    ("MaxPool", 7),
    ("MaxUnpool", 9),
    ("Mean", 7),
    ("MeanVarianceNormalization", 9),
    ("MelWeightMatrix", 17),
    ("Min", 7),
    ("Mish", 18),
    ("Mod", 10),
    ("Mul", 7),
    ("Neg", 7),
    ("NegativeLogLikelihoodLoss", 12),
    ("NonZero", 9),
    ("Not", 7),
    ("OneHot", 9),
    ("Or", 7),
    ("PRelu", 7),
    ("Pad", 7),
    ("Pow", 7),
    ("QLinearConv", 10),
    ("QLinearMatMul", 10),
    ("QuantizeLinear", 10),
    ("RMSNormalization", 23),
    ("RNN", 7),
    ("Range", 11),
    ("Reciprocal", 7),
    ("ReduceL1", 7),
    ("ReduceL2", 7),
    ("ReduceLogSum", 7),
    ("ReduceLogSumExp", 7),
    ("ReduceMax", 7),
    ("ReduceMean", 7),
    ("ReduceMin", 7),
    ("ReduceProd", 7),
    ("ReduceSum", 7),
    ("ReduceSumSquare", 7),
    ("Relu", 7),
    ("Reshape", 7),
    ("Resize", 10),
    ("ReverseSequence", 10),
    ("RoiAlign", 10),
    ("RotaryEmbedding", 23),
    ("Round", 11),
    ("Scan", 9),
    ("STFT", 17),
    ("Scatter", 9),
    ("ScatterElements", 11),
    ("ScatterND", 11),
    ("Selu", 7),
    ("Shape", 7),
    ("Shrink", 9),
    ("Sigmoid", 7),
    ("Sign", 9),
    ("Sin", 7),
    ("Sinh", 9),
    ("Size", 7),
    ("Slice", 7),
    ("Softmax", 7),
    ("SoftmaxCrossEntropyLoss", 12),
    ("Softplus", 7),
    ("Softsign", 7),
    ("SpaceToDepth", 7),
    ("Split", 7),
    ("Sqrt", 7),
    ("Squeeze", 7),
    ("Sub", 7),
    ("Sum", 7),
    ("SwiGLU", 28),
    ("Swish", 24),
    ("Tan", 7),
    ("Tanh", 7),
    ("ThresholdedRelu", 10),
    ("TensorScatter", 24),
    ("Tile", 7),
    ("TopK", 7),
    ("Transpose", 7),
    ("Trilu", 14),
    ("Unsqueeze", 7),
    ("Upsample", 7),
    ("Where", 9),
    ("Xor", 7),
];

/// Whether `op_type` of the default domain is supported at `opset`.
pub(crate) fn is_supported(op_type: &str, opset: i64) -> bool {
    if opset < 7 {
        return super::legacy::is_supported(op_type, opset);
    }
    SUPPORTED
        .iter()
        .any(|&(name, since)| name == op_type && opset >= since)
}

/// numpy-style multidirectional broadcast of two shapes.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

fn node(op: Op, inputs: Vec<usize>, dtype: DType, shape: Vec<usize>) -> Inferred {
    Inferred::Node {
        op,
        inputs,
        outputs: vec![(dtype, shape)],
    }
}

/// Parses and infers one node.
pub(crate) fn infer(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    match c.op_type {
        "Add" | "Sub" | "Mul" | "Div" => binary_arith(c),
        "Pow" => pow(c),
        "Mod" => modulo(c),
        "Equal" => equal(c),
        "Where" => where_(c),
        "Sum" => sum(c),
        "Relu" | "Sigmoid" | "Tanh" | "Erf" | "Sqrt" | "HardSwish" => unary(c),
        "Gelu" => {
            let approximate = match c.attr_string_or("approximate", "none")?.as_str() {
                "none" => GeluApproximation::None,
                "tanh" => GeluApproximation::Tanh,
                other => return Err(c.invalid(format!("unsupported approximate '{other}'"))),
            };
            unary_op(c, Op::Gelu { approximate })
        }
        "HardSigmoid" => {
            let alpha = c.attr_float_or("alpha", 0.2)?;
            let beta = c.attr_float_or("beta", 0.5)?;
            unary_op(c, Op::HardSigmoid { alpha, beta })
        }
        "Clip" => clip(c),
        "Cast" => cast(c),
        "CastLike" => cast_like(c),
        "Conv" => conv(c),
        "ConvTranspose" => conv_transpose(c),
        "BatchNormalization" => batch_norm(c),
        "AveragePool" | "MaxPool" => pool(c),
        "MaxUnpool" => max_unpool(c),
        "DFT" => dft(c),
        "Col2Im" => col2im(c),
        "DeformConv" => deform_conv(c),
        "RoiAlign" => roi_align(c),
        "STFT" => stft(c),
        "MelWeightMatrix" => mel_weight_matrix(c),
        "NegativeLogLikelihoodLoss" => nll_loss(c, false),
        "SoftmaxCrossEntropyLoss" => nll_loss(c, true),
        "GlobalAveragePool" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            if x.rank() < 3 {
                return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
            }
            let mut shape = x.shape.clone();
            shape[2..].iter_mut().for_each(|d| *d = 1);
            Ok(node(Op::GlobalAveragePool, vec![0], DType::F32, shape))
        }
        "LRN" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            let size = c
                .attr_int("size")?
                .ok_or_else(|| c.invalid("attribute 'size' is required"))?;
            let size = c.positive("size", &[size])?[0];
            let op = Op::Lrn {
                size,
                alpha: c.attr_float_or("alpha", 1e-4)?,
                beta: c.attr_float_or("beta", 0.75)?,
                bias: c.attr_float_or("bias", 1.0)?,
            };
            if x.rank() < 2 {
                return Err(c.mismatch("input rank < 2"));
            }
            Ok(node(op, vec![0], DType::F32, x.shape.clone()))
        }
        "Gemm" => gemm(c),
        "MatMul" => matmul(c),
        "Flatten" => {
            c.arity(1, 1)?;
            let x = c.input(0)?;
            let r = x.rank() as i64;
            let axis = c.attr_int_or("axis", 1)?;
            let axis = if axis < 0 { axis + r } else { axis };
            if !(0..=r).contains(&axis) {
                return Err(c.invalid(format!("axis {axis} out of range for rank {r}")));
            }
            let axis = axis as usize;
            let a = checked_numel(&x.shape[..axis]).ok_or_else(|| c.overflow("flatten"))?;
            let b = checked_numel(&x.shape[axis..]).ok_or_else(|| c.overflow("flatten"))?;
            Ok(node(Op::Flatten { axis }, vec![0], x.dtype, vec![a, b]))
        }
        "Reshape" => reshape(c),
        "Squeeze" => squeeze(c),
        "Unsqueeze" => unsqueeze(c),
        "Concat" => concat(c),
        "Split" => split(c),
        "Slice" => slice(c),
        "Gather" => gather(c),
        "Transpose" => {
            c.arity(1, 1)?;
            let x = c.input(0)?;
            let r = x.rank();
            let perm = match c.attr_ints("perm")? {
                Some(p) => c.non_negative("perm", &p)?,
                None => (0..r).rev().collect(),
            };
            let mut seen = vec![false; r];
            if perm.len() != r
                || perm
                    .iter()
                    .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
            {
                return Err(c.invalid(format!("perm {perm:?} is not a permutation of 0..{r}")));
            }
            let shape = perm.iter().map(|&p| x.shape[p]).collect();
            Ok(node(Op::Transpose { perm }, vec![0], x.dtype, shape))
        }
        "Expand" => {
            c.arity(2, 2)?;
            let x = c.input(0)?;
            let target = c
                .const_ints(1)?
                .ok_or_else(|| c.invalid("shape input is required"))?;
            let target = c.non_negative("shape", &target)?;
            let shape = broadcast(&x.shape, &target)
                .ok_or_else(|| c.mismatch(format!("cannot expand {:?} to {target:?}", x.shape)))?;
            Ok(node(
                Op::Expand {
                    shape: shape.clone(),
                },
                vec![0],
                x.dtype,
                shape,
            ))
        }
        "Pad" => pad(c),
        "Resize" => resize(c),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => reduce(c),
        "ArgMax" | "ArgMin" => arg_reduce(c),
        "Max" | "Min" | "Mean" => variadic(c),
        "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => compare(c),
        "And" | "Or" | "Xor" => logic(c),
        "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "BitShift" => bitwise(c),
        "BitwiseNot" => {
            c.arity(1, 1)?;
            let x = c.typed_input(0, &BITWISE)?;
            Ok(node(Op::BitwiseNot, vec![0], x.dtype, x.shape.clone()))
        }
        "Not" => {
            c.arity(1, 1)?;
            let x = c.typed_input(0, &[DType::Bool])?;
            Ok(node(Op::Not, vec![0], DType::Bool, x.shape.clone()))
        }
        "PRelu" => prelu(c),
        "LeakyRelu" => {
            let alpha = c.attr_float_or("alpha", 0.01)?;
            unary_op(c, Op::LeakyRelu { alpha })
        }
        "Elu" => {
            let alpha = c.attr_float_or("alpha", 1.0)?;
            unary_op(c, Op::Elu { alpha })
        }
        "Selu" => {
            let alpha = c.attr_float_or("alpha", 1.673_263_2)?;
            let gamma = c.attr_float_or("gamma", 1.050_701)?;
            unary_op(c, Op::Selu { alpha, gamma })
        }
        "Celu" => {
            let alpha = c.attr_float_or("alpha", 1.0)?;
            if alpha == 0.0 {
                return Err(c.invalid("alpha must be non-zero"));
            }
            unary_op(c, Op::Celu { alpha })
        }
        "Swish" => {
            let alpha = c.attr_float_or("alpha", 1.0)?;
            unary_op(c, Op::Swish { alpha })
        }
        "SwiGLU" => {
            c.arity(2, 2)?;
            let a = c.f32_input(0)?;
            let b = c.f32_input(1)?;
            if a.shape != b.shape {
                return Err(c.mismatch(format!(
                    "A {:?} and B {:?} differ in shape (SwiGLU does not broadcast)",
                    a.shape, b.shape
                )));
            }
            let alpha = c.attr_float_or("alpha", 1.0)?;
            Ok(node(
                Op::SwiGlu { alpha },
                vec![0, 1],
                DType::F32,
                a.shape.clone(),
            ))
        }
        "ThresholdedRelu" => {
            let alpha = c.attr_float_or("alpha", 1.0)?;
            unary_op(c, Op::ThresholdedRelu { alpha })
        }
        "Shrink" => {
            let bias = c.attr_float_or("bias", 0.0)?;
            let lambd = c.attr_float_or("lambd", 0.5)?;
            unary_op(c, Op::Shrink { bias, lambd })
        }
        "IsInf" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            let op = Op::IsInf {
                detect_negative: c.attr_bool_or("detect_negative", true)?,
                detect_positive: c.attr_bool_or("detect_positive", true)?,
            };
            Ok(node(op, vec![0], DType::Bool, x.shape.clone()))
        }
        "GlobalMaxPool" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            if x.rank() < 3 {
                return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
            }
            let mut shape = x.shape.clone();
            shape[2..].iter_mut().for_each(|d| *d = 1);
            Ok(node(Op::GlobalMaxPool, vec![0], DType::F32, shape))
        }
        "Tile" => tile(c),
        "DepthToSpace" | "SpaceToDepth" => block_shuffle(c),
        "InstanceNormalization" => instance_norm(c),
        "Upsample" => upsample(c),
        "GatherElements" => gather_elements(c),
        "ScatterElements" | "Scatter" => scatter_elements(c),
        "ScatterND" => scatter_nd(c),
        "OneHot" => one_hot(c),
        "TopK" => top_k(c),
        "CumSum" | "CumProd" => cumsum(c),
        "Trilu" => trilu(c),
        name if MathFn::ALL.iter().any(|f| f.onnx_name() == name) => math(c),
        "Softmax" | "LogSoftmax" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            let legacy = c.opset < 13;
            let axis = c.attr_int_or("axis", if legacy { 1 } else { -1 })?;
            let axis = c.axis(axis, x.rank())?;
            let op = if c.op_type == "Softmax" {
                Op::Softmax {
                    axis,
                    flatten_2d: legacy,
                }
            } else {
                Op::LogSoftmax {
                    axis,
                    flatten_2d: legacy,
                }
            };
            Ok(node(op, vec![0], DType::F32, x.shape.clone()))
        }
        "Hardmax" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            let legacy = c.opset < 13;
            let axis = c.attr_int_or("axis", if legacy { 1 } else { -1 })?;
            let op = Op::Hardmax {
                axis: c.axis(axis, x.rank())?,
                flatten_2d: legacy,
            };
            Ok(node(op, vec![0], DType::F32, x.shape.clone()))
        }
        "GatherND" => gather_nd(c),
        "ReverseSequence" => reverse_sequence(c),
        "QuantizeLinear" => quantize_linear(c),
        "DequantizeLinear" => dequantize_linear(c),
        "DynamicQuantizeLinear" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            Ok(Inferred::Node {
                op: Op::DynamicQuantizeLinear,
                inputs: vec![0],
                outputs: vec![
                    (DType::U8, x.shape.clone()),
                    (DType::F32, vec![]),
                    (DType::U8, vec![]),
                ],
            })
        }
        "MatMulInteger" => matmul_integer(c),
        "QLinearMatMul" => qlinear_matmul(c),
        "ConvInteger" => conv_integer(c),
        "QLinearConv" => qlinear_conv(c),
        "Det" => {
            c.arity(1, 1)?;
            let x = c.f32_input(0)?;
            let r = x.rank();
            if r < 2 || x.shape[r - 1] != x.shape[r - 2] {
                return Err(c.mismatch(format!("input {:?} is not [..., n, n]", x.shape)));
            }
            Ok(node(
                Op::Det,
                vec![0],
                DType::F32,
                x.shape[..r - 2].to_vec(),
            ))
        }
        "AffineGrid" => affine_grid(c),
        "CenterCropPad" => center_crop_pad(c),
        "RNN" | "GRU" | "LSTM" => recurrent(c),
        "Attention" => attention(c),
        "BitCast" => bit_cast(c),
        "TensorScatter" => tensor_scatter(c),
        "LpNormalization" => lp_normalization(c),
        "RotaryEmbedding" => rotary_embedding(c),
        "Einsum" => einsum(c),
        "GridSample" => grid_sample(c),
        "EyeLike" => eye_like(c),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => window(c),
        "MeanVarianceNormalization" => mean_variance_norm(c),
        "GroupNormalization" => group_norm(c),
        "LpPool" | "GlobalLpPool" => lp_pool(c),
        "LayerNormalization" => layer_norm(c),
        "RMSNormalization" => rms_norm(c),
        "Range" => range(c),
        "NonZero" => nonzero(c),
        "Shape" => {
            c.arity(1, 1)?;
            let x = c.input(0)?;
            let r = x.rank() as i64;
            let clampi = |v: i64| {
                let v = if v < 0 { v.saturating_add(r) } else { v };
                v.clamp(0, r) as usize
            };
            let start = clampi(c.attr_int_or("start", 0)?);
            let end = clampi(c.attr_int_or("end", r)?);
            let dims: Vec<i64> = x.shape[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            Ok(Inferred::Const(vec![(
                vec![dims.len()],
                TensorData::I64(dims),
            )]))
        }
        "Size" => {
            // The element count, known at load like the shape it comes from.
            c.arity(1, 1)?;
            let x = c.input(0)?;
            let n = checked_numel(&x.shape).ok_or_else(|| c.overflow("Size"))?;
            let n = i64::try_from(n).map_err(|_| c.overflow("Size"))?;
            Ok(Inferred::Const(vec![(
                Vec::new(),
                TensorData::I64(vec![n]),
            )]))
        }
        "ConstantOfShape" => {
            c.arity(1, 1)?;
            let shape = c
                .const_ints(0)?
                .ok_or_else(|| c.invalid("shape input is required"))?;
            let shape = c.non_negative("shape", &shape)?;
            let fill = match c.attr_tensor("value")? {
                Some(t) => {
                    let (_, d) = c.decode(t)?;
                    if d.len() != 1 {
                        return Err(c.invalid("'value' must hold exactly one element"));
                    }
                    d
                }
                None => TensorData::F32(vec![0.0]),
            };
            let n = checked_numel(&shape).ok_or_else(|| c.overflow("ConstantOfShape"))?;
            crate::loader::consteval::check_const_size(c, &shape, fill.dtype())?;
            let data = crate::loader::consteval::splat(&fill, n);
            Ok(Inferred::Const(vec![(shape, data)]))
        }
        "Constant" => constant(c),
        "Identity" => {
            c.arity(1, 1)?;
            c.input(0)?;
            Ok(Inferred::Alias)
        }
        "Dropout" => {
            c.arity(1, 3)?;
            c.input(0)?;
            if c.opset >= 12 {
                if let Some(mode) = c.opt_input(2) {
                    match mode.konst.as_deref() {
                        Some(TensorData::Bool(v)) if v.iter().all(|&b| b == 0) => {}
                        _ => {
                            return Err(
                                c.invalid("training_mode must be a constant false for inference")
                            )
                        }
                    }
                }
            }
            Ok(Inferred::Alias)
        }
        other => Err(c.invalid(format!("operator {other} is not supported"))),
    }
}

fn same_dtype(c: &NodeCtx<'_>, a: &Value, b: &Value) -> Result<(), ExecError> {
    if a.dtype != b.dtype {
        return Err(c.mismatch(format!(
            "inputs have different types {} and {}",
            a.dtype, b.dtype
        )));
    }
    Ok(())
}

fn bcast(c: &NodeCtx<'_>, a: &Value, b: &Value) -> Result<Vec<usize>, ExecError> {
    broadcast(&a.shape, &b.shape).ok_or_else(|| {
        c.mismatch(format!(
            "shapes {:?} and {:?} do not broadcast",
            a.shape, b.shape
        ))
    })
}

/// Element types of the arithmetic, comparison and Max/Min kernels.
const NUMERIC: [DType; 10] = [
    DType::F32,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::I8,
    DType::F64,
    DType::I16,
    DType::U16,
    DType::U32,
    DType::U64,
];

fn binary_arith(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let numeric = NUMERIC;
    let a = c.typed_input(0, &numeric)?;
    let b = c.typed_input(1, &numeric)?;
    same_dtype(c, a, b)?;
    let shape = bcast(c, a, b)?;
    let op = match c.op_type {
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        _ => Op::Div,
    };
    Ok(node(op, vec![0, 1], a.dtype, shape))
}

fn pow(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let numeric = [DType::F32, DType::I32, DType::I64, DType::F64];
    let a = c.typed_input(0, &numeric)?;
    // Opset 12+ exponents may be any numeric type (computed through f64).
    let b = c.typed_input(
        1,
        if c.opset < 12 {
            &numeric[..]
        } else {
            &NUMERIC[..]
        },
    )?;
    if c.opset < 12 {
        same_dtype(c, a, b)?;
    }
    let shape = bcast(c, a, b)?;
    Ok(node(Op::Pow, vec![0, 1], a.dtype, shape))
}

fn modulo(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let numeric = NUMERIC;
    let a = c.typed_input(0, &numeric)?;
    let b = c.typed_input(1, &numeric)?;
    same_dtype(c, a, b)?;
    let fmod = c.attr_bool_or("fmod", false)?;
    // Before opset 28 `fmod = 0` was for integers only; from 28 it is the floored
    // remainder for floats too.
    if !fmod && c.opset < 28 && matches!(a.dtype, DType::F32 | DType::F64) {
        return Err(c.invalid("fmod must be 1 for floating-point inputs before opset 28"));
    }
    let shape = bcast(c, a, b)?;
    Ok(node(Op::Mod { fmod }, vec![0, 1], a.dtype, shape))
}

fn equal(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let a = c.input(0)?;
    let b = c.input(1)?;
    same_dtype(c, a, b)?;
    if let DType::Narrow(n) = a.dtype {
        // Codes are not values (NaN, two zeros): compare after a Cast, as the spec's types say.
        return Err(c.mismatch(format!("Equal does not take {n}, a storage type")));
    }
    let shape = bcast(c, a, b)?;
    Ok(node(Op::Equal, vec![0, 1], DType::Bool, shape))
}

fn where_(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let cond = c.typed_input(0, &[DType::Bool])?;
    let x = c.input(1)?;
    let y = c.input(2)?;
    same_dtype(c, x, y)?;
    let s = broadcast(&cond.shape, &x.shape)
        .and_then(|s| broadcast(&s, &y.shape))
        .ok_or_else(|| {
            c.mismatch(format!(
                "shapes {:?}, {:?}, {:?} do not broadcast",
                cond.shape, x.shape, y.shape
            ))
        })?;
    Ok(node(Op::Where, vec![0, 1, 2], x.dtype, s))
}

fn sum(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    if c.num_inputs() == 0 {
        return Err(c.invalid("needs at least one input"));
    }
    let first = c.typed_input(0, &NUMBERS)?;
    let mut shape = first.shape.clone();
    for i in 1..c.num_inputs() {
        let v = c.input(i)?;
        same_dtype(c, first, v)?;
        shape = broadcast(&shape, &v.shape).ok_or_else(|| {
            c.mismatch(format!(
                "shapes {shape:?} and {:?} do not broadcast",
                v.shape
            ))
        })?;
    }
    Ok(node(
        Op::Sum,
        (0..c.num_inputs()).collect(),
        first.dtype,
        shape,
    ))
}

fn unary(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let op = match c.op_type {
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Sigmoid,
        "Tanh" => Op::Tanh,
        "Erf" => Op::Erf,
        "Sqrt" => Op::Sqrt,
        _ => Op::HardSwish,
    };
    unary_op(c, op)
}

fn unary_op(c: &NodeCtx<'_>, op: Op) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.f32_input(0)?;
    Ok(node(op, vec![0], DType::F32, x.shape.clone()))
}

fn clip(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let (min, max) = if c.opset < 11 {
        c.arity(1, 1)?;
        (
            c.attr_float_or("min", f32::MIN)?,
            c.attr_float_or("max", f32::MAX)?,
        )
    } else {
        c.arity(1, 3)?;
        let x = c.typed_input(0, &NUMERIC)?;
        let known = |i: usize| c.opt_input(i).is_none_or(|v| v.konst.is_some());
        if x.dtype != DType::F32 || !known(1) || !known(2) {
            return clip_bounds(c, x);
        }
        (
            c.const_scalar_f32(1)?.unwrap_or(f32::NEG_INFINITY),
            c.const_scalar_f32(2)?.unwrap_or(f32::INFINITY),
        )
    };
    let x = c.f32_input(0)?;
    Ok(node(
        Op::Clip { min, max },
        vec![0],
        DType::F32,
        x.shape.clone(),
    ))
}

/// A Clip whose bounds are read at run time ([`Op::ClipBounds`]): each present bound must be
/// a scalar (one element) of `x`'s type.
fn clip_bounds(c: &NodeCtx<'_>, x: &Value) -> Result<Inferred, ExecError> {
    let mut inputs = vec![0];
    for i in [1, 2] {
        if let Some(b) = c.opt_input(i) {
            same_dtype(c, x, b)?;
            if b.shape.iter().product::<usize>() != 1 {
                return Err(c.mismatch(format!(
                    "input {i} must be a scalar, has shape {:?}",
                    b.shape
                )));
            }
            inputs.push(i);
        }
    }
    Ok(node(
        Op::ClipBounds {
            min: c.opt_input(1).is_some(),
            max: c.opt_input(2).is_some(),
        },
        inputs,
        x.dtype,
        x.shape.clone(),
    ))
}

/// The required `to` attribute (Cast, BitCast) as an element type AegisRT runs.
fn to_attr(c: &NodeCtx<'_>) -> Result<DType, ExecError> {
    let to = c
        .attr_int("to")?
        .ok_or_else(|| c.invalid("attribute 'to' is required"))?;
    i32::try_from(to)
        .ok()
        .and_then(DType::from_onnx)
        .ok_or_else(|| ExecError::UnsupportedDType {
            model: c.model.to_owned(),
            tensor: format!("output of {}", c.name),
            dtype: crate::loader::tensor::onnx_dtype_name(i32::try_from(to).unwrap_or(-1)),
        })
}

fn cast(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.input(0)?;
    let to = to_attr(c)?;
    let narrow = narrow_mode(c)?;
    Ok(node(Op::Cast { to, narrow }, vec![0], to, x.shape.clone()))
}

/// Cast's `saturate` (opset 19) and `round_mode` (opset 24): how a value that does not fit a
/// narrow float target converts.
fn narrow_mode(c: &NodeCtx<'_>) -> Result<NarrowMode, ExecError> {
    let saturate = c.opset < 19 || c.attr_bool_or("saturate", true)?;
    let round = match c.opset >= 24 {
        true => c.attr_string_or("round_mode", "up")?,
        false => "up".to_owned(),
    };
    let round = match round.as_str() {
        "up" => E8M0Round::Up,
        "down" => E8M0Round::Down,
        "nearest" => E8M0Round::Nearest,
        other => {
            return Err(c.invalid(format!(
                "round_mode '{other}' is not 'up', 'down' or 'nearest'"
            )))
        }
    };
    Ok(NarrowMode { saturate, round })
}

/// `CastLike`: a `Cast` to the element type of the second input (whose values are unused).
fn cast_like(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.input(0)?;
    let to = c.input(1)?.dtype;
    let narrow = narrow_mode(c)?;
    Ok(node(Op::Cast { to, narrow }, vec![0], to, x.shape.clone()))
}

/// Spatial attributes shared by Conv, ConvTranspose and the pools.
struct Spatial {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<usize>,
    auto_pad: String,
}

fn spatial_attrs(
    c: &NodeCtx<'_>,
    nsp: usize,
    kernel: Vec<usize>,
    allow_dilations: bool,
) -> Result<Spatial, ExecError> {
    if kernel.len() != nsp {
        return Err(c.invalid(format!(
            "kernel_shape {kernel:?} does not have {nsp} spatial dims"
        )));
    }
    let ones = vec![1usize; nsp];
    let strides = match c.attr_ints("strides")? {
        Some(s) => c.positive("strides", &s)?,
        None => ones.clone(),
    };
    let dilations = match c.attr_ints("dilations")? {
        Some(d) if allow_dilations => c.positive("dilations", &d)?,
        Some(_) => return Err(c.invalid("attribute 'dilations' is not defined at this opset")),
        None => ones,
    };
    let pads = match c.attr_ints("pads")? {
        Some(p) => c.non_negative("pads", &p)?,
        None => vec![0; 2 * nsp],
    };
    if strides.len() != nsp || dilations.len() != nsp || pads.len() != 2 * nsp {
        return Err(c.invalid(format!(
            "strides {strides:?} / dilations {dilations:?} / pads {pads:?} do not fit {nsp} spatial dims"
        )));
    }
    let auto_pad = c.attr_string_or("auto_pad", "NOTSET")?;
    match auto_pad.as_str() {
        "NOTSET" | "" | "VALID" | "SAME_UPPER" | "SAME_LOWER" => {}
        other => return Err(c.invalid(format!("unsupported auto_pad '{other}'"))),
    }
    Ok(Spatial {
        kernel,
        strides,
        dilations,
        pads,
        auto_pad,
    })
}

impl Spatial {
    /// Effective (dilated) kernel extent along spatial axis `i`.
    fn dk(&self, i: usize) -> Option<usize> {
        (self.kernel[i] - 1)
            .checked_mul(self.dilations[i])?
            .checked_add(1)
    }

    /// Resolves auto_pad for a forward (conv/pool) window and returns output spatial dims.
    fn forward(
        &mut self,
        c: &NodeCtx<'_>,
        input: &[usize],
        ceil_mode: bool,
    ) -> Result<Vec<usize>, ExecError> {
        let nsp = input.len();
        let mut out = Vec::with_capacity(nsp);
        for (i, &n) in input.iter().enumerate() {
            let dk = self.dk(i).ok_or_else(|| c.overflow("kernel extent"))?;
            let s = self.strides[i];
            match self.auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => {
                    let o = n.div_ceil(s);
                    let need = (o.saturating_sub(1))
                        .checked_mul(s)
                        .and_then(|v| v.checked_add(dk))
                        .ok_or_else(|| c.overflow("padding"))?;
                    let total = need.saturating_sub(n);
                    let (b, e) = if self.auto_pad == "SAME_UPPER" {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    };
                    self.pads[i] = b;
                    self.pads[i + nsp] = e;
                }
                "VALID" => {
                    self.pads[i] = 0;
                    self.pads[i + nsp] = 0;
                }
                _ => {}
            }
            let padded = n
                .checked_add(self.pads[i])
                .and_then(|v| v.checked_add(self.pads[i + nsp]))
                .ok_or_else(|| c.overflow("padded extent"))?;
            if padded < dk {
                return Err(c.mismatch(format!(
                    "window {dk} larger than padded input {padded} on spatial axis {i}"
                )));
            }
            let span = padded - dk;
            let mut o = if ceil_mode {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            // With ceil_mode the last window must start inside the input or left padding.
            if ceil_mode && (o - 1).saturating_mul(s) >= n + self.pads[i] {
                o -= 1;
            }
            out.push(o);
        }
        Ok(out)
    }
}

fn conv(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let x = c.f32_input(0)?;
    let w = c.f32_input(1)?;
    let (attrs, shape) = conv_geometry(c, x, w)?;
    let m = w.shape[0];
    let mut inputs = vec![0, 1];
    if let Some(b) = c.opt_input(2) {
        if b.dtype != DType::F32 || b.shape != [m] {
            return Err(c.mismatch(format!("bias {:?} is not [{m}]", b.shape)));
        }
        inputs.push(2);
    }
    let mut pads = attrs.pads_begin;
    pads.extend(attrs.pads_end);
    let op = Op::Conv {
        kernel_shape: attrs.kernel,
        strides: attrs.strides,
        pads,
        dilations: attrs.dilations,
        group: attrs.group,
    };
    Ok(node(op, inputs, DType::F32, shape))
}

/// The geometry of a convolution of `x` by `w` (Conv, ConvInteger, QLinearConv): attributes
/// with defaults filled and `auto_pad` resolved, and the output shape.
fn conv_geometry(
    c: &NodeCtx<'_>,
    x: &Value,
    w: &Value,
) -> Result<(crate::kernels::ConvAttrs, Vec<usize>), ExecError> {
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(c.mismatch(format!(
            "input {:?} and weight {:?} ranks do not fit",
            x.shape, w.shape
        )));
    }
    let nsp = x.rank() - 2;
    let group = c.attr_int_or("group", 1)?;
    let group = c.positive("group", &[group])?[0];
    let kernel = match c.attr_ints("kernel_shape")? {
        Some(k) => c.positive("kernel_shape", &k)?,
        None => w.shape[2..].to_vec(),
    };
    if kernel != w.shape[2..] {
        return Err(c.mismatch(format!(
            "kernel_shape {kernel:?} does not match weight {:?}",
            w.shape
        )));
    }
    let (cin, m) = (x.shape[1], w.shape[0]);
    if w.shape[1].checked_mul(group) != Some(cin) || m % group != 0 {
        return Err(c.mismatch(format!(
            "input channels {cin}, weight {:?} and group {group} do not fit",
            w.shape
        )));
    }
    let mut sp = spatial_attrs(c, nsp, kernel, true)?;
    let out_sp = sp.forward(c, &x.shape[2..], false)?;
    let mut shape = vec![x.shape[0], m];
    shape.extend(out_sp);
    let attrs = crate::kernels::ConvAttrs {
        kernel: sp.kernel,
        strides: sp.strides,
        dilations: sp.dilations,
        pads_begin: sp.pads[..nsp].to_vec(),
        pads_end: sp.pads[nsp..].to_vec(),
        group,
    };
    Ok((attrs, shape))
}

fn conv_transpose(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let x = c.f32_input(0)?;
    let w = c.f32_input(1)?;
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(c.mismatch(format!(
            "input {:?} and weight {:?} ranks do not fit",
            x.shape, w.shape
        )));
    }
    let nsp = x.rank() - 2;
    let group = c.attr_int_or("group", 1)?;
    let group = c.positive("group", &[group])?[0];
    let kernel = match c.attr_ints("kernel_shape")? {
        Some(k) => c.positive("kernel_shape", &k)?,
        None => w.shape[2..].to_vec(),
    };
    if kernel != w.shape[2..] {
        return Err(c.mismatch(format!(
            "kernel_shape {kernel:?} does not match weight {:?}",
            w.shape
        )));
    }
    if w.shape[0] != x.shape[1] {
        return Err(c.mismatch(format!(
            "input channels {} do not match weight {:?}",
            x.shape[1], w.shape
        )));
    }
    let m = w.shape[1]
        .checked_mul(group)
        .ok_or_else(|| c.overflow("output channels"))?;
    if x.shape[1] % group != 0 {
        return Err(c.mismatch(format!("group {group} does not divide input channels")));
    }
    let mut inputs = vec![0, 1];
    if let Some(b) = c.opt_input(2) {
        if b.dtype != DType::F32 || b.shape != [m] {
            return Err(c.mismatch(format!("bias {:?} is not [{m}]", b.shape)));
        }
        inputs.push(2);
    }
    let mut sp = spatial_attrs(c, nsp, kernel, true)?;
    let mut output_padding = match c.attr_ints("output_padding")? {
        Some(p) => c.non_negative("output_padding", &p)?,
        None => vec![0; nsp],
    };
    if output_padding.len() != nsp {
        return Err(c.invalid("output_padding does not fit the spatial dims"));
    }
    let output_shape = match c.attr_ints("output_shape")? {
        Some(s) => {
            let s = c.non_negative("output_shape", &s)?;
            // Some exporters include N and C.
            let s = if s.len() == nsp + 2 {
                s[2..].to_vec()
            } else {
                s
            };
            if s.len() != nsp {
                return Err(c.invalid("output_shape does not fit the spatial dims"));
            }
            Some(s)
        }
        None => None,
    };
    let mut out_sp = Vec::with_capacity(nsp);
    for i in 0..nsp {
        let n = x.shape[2 + i];
        let s = sp.strides[i];
        let dk = sp.dk(i).ok_or_else(|| c.overflow("kernel extent"))?;
        // Full (uncropped) output extent.
        let full = n
            .saturating_sub(1)
            .checked_mul(s)
            .and_then(|v| v.checked_add(output_padding[i]))
            .and_then(|v| v.checked_add(dk))
            .ok_or_else(|| c.overflow("output extent"))?;
        let target = match (&output_shape, sp.auto_pad.as_str()) {
            (Some(os), _) => Some(os[i]),
            (None, "SAME_UPPER" | "SAME_LOWER") => Some(
                n.checked_mul(s)
                    .ok_or_else(|| c.overflow("output extent"))?,
            ),
            _ => None,
        };
        if let Some(t) = target {
            if t > full {
                // The spec allows growing through output_padding; fold the difference there.
                output_padding[i] += t - full;
                sp.pads[i] = 0;
                sp.pads[i + nsp] = 0;
            } else {
                let total = full - t;
                let (b, e) = if sp.auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                sp.pads[i] = b;
                sp.pads[i + nsp] = e;
            }
            out_sp.push(t);
        } else {
            if sp.auto_pad == "VALID" {
                sp.pads[i] = 0;
                sp.pads[i + nsp] = 0;
            }
            let cut = sp.pads[i] + sp.pads[i + nsp];
            if cut > full {
                return Err(c.mismatch("pads larger than the output"));
            }
            out_sp.push(full - cut);
        }
    }
    let mut shape = vec![x.shape[0], m];
    shape.extend(out_sp);
    let op = Op::ConvTranspose {
        kernel_shape: sp.kernel,
        strides: sp.strides,
        pads: sp.pads,
        dilations: sp.dilations,
        output_padding,
        group,
    };
    Ok(node(op, inputs, DType::F32, shape))
}

fn batch_norm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(5, 5)?;
    let x = c.f32_input(0)?;
    if x.rank() < 2 {
        return Err(c.mismatch("input rank < 2"));
    }
    let ch = x.shape[1];
    for i in 1..5 {
        let p = c.f32_input(i)?;
        if p.shape != [ch] {
            return Err(c.mismatch(format!(
                "parameter input {i} has shape {:?}, expected [{ch}]",
                p.shape
            )));
        }
    }
    if c.opset < 9 && !c.attr_bool_or("spatial", true)? {
        return Err(c.invalid("spatial=0 is not supported"));
    }
    if c.attr_bool_or("training_mode", false)? {
        return Err(c.invalid("training_mode=1 is not supported"));
    }
    let epsilon = c.attr_float_or("epsilon", 1e-5)?;
    Ok(node(
        Op::BatchNormalization { epsilon },
        vec![0, 1, 2, 3, 4],
        DType::F32,
        x.shape.clone(),
    ))
}

fn pool(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    // MaxPool takes u8 and i8 from opset 12 (QOperator models pool quantized tensors).
    let x = if c.op_type == "MaxPool" && c.opset >= 12 {
        c.typed_input(0, &[DType::F32, DType::U8, DType::I8])?
    } else {
        c.f32_input(0)?
    };
    if x.rank() < 3 {
        return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
    }
    let nsp = x.rank() - 2;
    let kernel = c
        .attr_ints("kernel_shape")?
        .ok_or_else(|| c.invalid("attribute 'kernel_shape' is required"))?;
    let kernel = c.positive("kernel_shape", &kernel)?;
    let is_max = c.op_type == "MaxPool";
    let allow_dil = if is_max { c.opset >= 10 } else { c.opset >= 19 };
    let mut sp = spatial_attrs(c, nsp, kernel, allow_dil)?;
    let ceil_mode = if c.opset >= 10 {
        c.attr_bool_or("ceil_mode", false)?
    } else {
        false
    };
    let storage_order = if is_max && c.opset >= 8 {
        c.attr_int_or("storage_order", 0)?
    } else {
        0
    };
    if !(0..=1).contains(&storage_order) {
        return Err(c.invalid(format!(
            "storage_order {storage_order}: 0 (row-major) or 1 (column-major)"
        )));
    }
    let out_sp = sp.forward(c, &x.shape[2..], ceil_mode)?;
    let mut shape = x.shape[..2].to_vec();
    shape.extend(out_sp);
    // The optional Indices output (opset 8+).
    if is_max && c.num_outputs > 1 && c.opset >= 8 {
        if x.dtype != DType::F32 {
            return Err(c.mismatch(format!(
                "MaxPool's Indices output is computed for float input, not {}",
                x.dtype
            )));
        }
        return Ok(Inferred::Node {
            op: Op::MaxPoolIndices {
                kernel_shape: sp.kernel,
                strides: sp.strides,
                pads: sp.pads,
                dilations: sp.dilations,
                ceil_mode,
                column_major: storage_order == 1,
            },
            inputs: vec![0],
            outputs: vec![(DType::F32, shape.clone()), (DType::I64, shape)],
        });
    }
    let op = if is_max {
        Op::MaxPool {
            kernel_shape: sp.kernel,
            strides: sp.strides,
            pads: sp.pads,
            dilations: sp.dilations,
            ceil_mode,
        }
    } else {
        Op::AveragePool {
            kernel_shape: sp.kernel,
            strides: sp.strides,
            pads: sp.pads,
            dilations: sp.dilations,
            count_include_pad: c.attr_bool_or("count_include_pad", false)?,
            ceil_mode,
        }
    };
    Ok(node(op, vec![0], x.dtype, shape))
}

/// MaxUnpool: the output shape is the `output_shape` input (known at load) or, without it,
/// `(in - 1) * stride + kernel - pads` per spatial axis.
/// A scalar integer input known at load that must be positive.
fn positive_scalar(c: &NodeCtx<'_>, i: usize, what: &str) -> Result<Option<usize>, ExecError> {
    c.const_scalar_i64(i, what)?
        .map(|v| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| c.invalid(format!("{what} {v} must be positive")))
        })
        .transpose()
}

/// NonZero of a constant, folded at load (its output shape is the data's nonzero count, so
/// on run-time data it has no static shape). A scalar counts as one element, as numpy's
/// `nonzero` of `atleast_1d` does.
fn nonzero(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.input(0)?;
    let Some(data) = &x.konst else {
        return Err(c.invalid(
            "input 0 must be known at load: NonZero's output shape depends on the data, and \
             AegisRT plans static shapes",
        ));
    };
    let nonzero: Vec<bool> = match &**data {
        TensorData::F32(v) => v.iter().map(|&e| e != 0.0).collect(),
        TensorData::I32(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::I64(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::Bool(v) | TensorData::U8(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::I8(v) => v.iter().map(|&e| e != 0).collect(),
        // Either sign of zero is zero.
        TensorData::F16(v) | TensorData::BF16(v) => v.iter().map(|&e| e & 0x7fff != 0).collect(),
        TensorData::F64(v) => v.iter().map(|&e| e != 0.0).collect(),
        TensorData::I16(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::U16(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::U32(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::U64(v) => v.iter().map(|&e| e != 0).collect(),
        TensorData::Narrow(t, v) => v.iter().map(|&e| t.decode(e) != 0.0).collect(),
    };
    let dims = if x.shape.is_empty() {
        vec![1]
    } else {
        x.shape.clone()
    };
    let hits: Vec<usize> = (0..nonzero.len()).filter(|&i| nonzero[i]).collect();
    let shape = vec![dims.len(), hits.len()];
    crate::loader::consteval::check_const_size(c, &shape, DType::I64)?;
    let mut out = vec![0i64; dims.len() * hits.len()];
    for (j, &flat) in hits.iter().enumerate() {
        let mut rest = flat;
        for (d, &extent) in dims.iter().enumerate().rev() {
            out[d * hits.len() + j] = (rest % extent) as i64;
            rest /= extent;
        }
    }
    Ok(Inferred::Const(vec![(shape, TensorData::I64(out))]))
}

/// DeformConv (2-D).
fn deform_conv(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 5)?;
    let x = c.f32_input(0)?;
    let w = c.f32_input(1)?;
    let off = c.f32_input(2)?;
    let (&[n, ch, ih, iw], &[oc, cg, kh, kw]) = (&x.shape[..], &w.shape[..]) else {
        return Err(c.mismatch(format!(
            "X {:?} and W {:?}: 2-D deformable convolution needs rank-4 X and W",
            x.shape, w.shape
        )));
    };
    let pair = |name: &str, default: usize| -> Result<[usize; 2], ExecError> {
        match c.attr_ints(name)?.as_deref() {
            None => Ok([default; 2]),
            Some(&[a, b]) if a > 0 && b > 0 => Ok([a as usize, b as usize]),
            Some(v) => Err(c.invalid(format!("{name} {v:?}: two positive entries"))),
        }
    };
    let kernel = match c.attr_ints("kernel_shape")?.as_deref() {
        None => [kh, kw],
        Some(&[a, b]) if a as usize == kh && b as usize == kw => [kh, kw],
        Some(v) => {
            return Err(c.mismatch(format!("kernel_shape {v:?} for W {:?}", w.shape)));
        }
    };
    let pads = match c.attr_ints("pads")?.as_deref() {
        None => [0; 4],
        Some(v) if v.len() == 4 && v.iter().all(|&p| p >= 0) => {
            [v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize]
        }
        Some(v) => return Err(c.invalid(format!("pads {v:?}: four non-negative entries"))),
    };
    let count = |name: &str| -> Result<usize, ExecError> {
        let v = c.attr_int_or(name, 1)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| c.invalid(format!("{name} {v} must be positive")))
    };
    let spec = DeformSpec {
        kernel,
        pads,
        strides: pair("strides", 1)?,
        dilations: pair("dilations", 1)?,
        group: count("group")?,
        offset_group: count("offset_group")?,
    };
    if cg * spec.group != ch || oc % spec.group != 0 || ch % spec.offset_group != 0 {
        return Err(c.mismatch(format!(
            "X {:?}, W {:?}, group {}, offset_group {}: channel counts do not divide",
            x.shape, w.shape, spec.group, spec.offset_group
        )));
    }
    let [oh, ow] = spec
        .output(ih, iw)
        .ok_or_else(|| c.invalid(format!("the kernel does not fit a {ih}x{iw} input")))?;
    let taps = kh * kw;
    let want_off = [n, spec.offset_group * 2 * taps, oh, ow];
    if off.shape != want_off {
        return Err(c.mismatch(format!(
            "offset of shape {:?}, expected {want_off:?}",
            off.shape
        )));
    }
    let mut inputs = vec![0, 1, 2];
    let bias = c.opt_input(3).is_some();
    if bias {
        let b = c.f32_input(3)?;
        if b.shape != [oc] {
            return Err(c.mismatch(format!("B of shape {:?} for {oc} channels", b.shape)));
        }
        inputs.push(3);
    }
    let mask = c.opt_input(4).is_some();
    if mask {
        let m = c.f32_input(4)?;
        let want = [n, spec.offset_group * taps, oh, ow];
        if m.shape != want {
            return Err(c.mismatch(format!("mask of shape {:?}, expected {want:?}", m.shape)));
        }
        inputs.push(4);
    }
    Ok(node(
        Op::DeformConv { spec, bias, mask },
        inputs,
        DType::F32,
        vec![n, oc, oh, ow],
    ))
}

/// Col2Im: `image_shape` and `block_shape` known at load.
fn col2im(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let x = c.f32_input(0)?;
    let dims = |i: usize, what: &str| -> Result<Vec<usize>, ExecError> {
        let v = c
            .const_ints(i)?
            .ok_or_else(|| c.invalid(format!("input {i} ({what}) is required")))?;
        c.positive(what, &v)
    };
    let image = dims(1, "image_shape")?;
    let block = dims(2, "block_shape")?;
    let rank = image.len();
    if block.len() != rank || rank == 0 {
        return Err(c.mismatch(format!(
            "image_shape {image:?} and block_shape {block:?} must have one entry per spatial axis"
        )));
    }
    let per_axis = |name: &str, n: usize, default: usize| -> Result<Vec<usize>, ExecError> {
        match c.attr_ints(name)? {
            None => Ok(vec![default; n]),
            Some(v) if v.len() == n => v
                .iter()
                .map(|&d| {
                    usize::try_from(d)
                        .ok()
                        .filter(|&d| default == 0 || d > 0)
                        .ok_or_else(|| c.invalid(format!("{name} entry {d}")))
                })
                .collect(),
            Some(v) => Err(c.invalid(format!("{name} has {} entries, expected {n}", v.len()))),
        }
    };
    let spec = Col2ImSpec {
        dilations: per_axis("dilations", rank, 1)?,
        pads: per_axis("pads", 2 * rank, 0)?,
        strides: per_axis("strides", rank, 1)?,
        image,
        block,
    };
    let positions = spec
        .positions()
        .ok_or_else(|| c.invalid(format!("no block fits the padded image: {spec:?}")))?;
    let bsize: usize = spec.block.iter().product();
    let npos: usize = positions.iter().product();
    match x.shape[..] {
        [n, cb, l] if cb % bsize == 0 && l == npos => {
            let mut shape = vec![n, cb / bsize];
            shape.extend_from_slice(&spec.image);
            Ok(node(Op::Col2Im(spec), vec![0], DType::F32, shape))
        }
        _ => Err(c.mismatch(format!(
            "input of shape {:?}: expected [N, C * {bsize}, {npos}] for blocks {:?} at \
             {positions:?} positions",
            x.shape, spec.block
        ))),
    }
}

/// RoiAlign (opset 10; opset 16 adds `coordinate_transformation_mode`, default half_pixel).
fn roi_align(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let x = c.f32_input(0)?;
    let rois = c.f32_input(1)?;
    let batch = c.typed_input(2, &[DType::I64])?;
    let [_, ch, _, _] = x.shape[..] else {
        return Err(c.mismatch(format!("X of shape {:?}: expected [N, C, H, W]", x.shape)));
    };
    let r = match (&rois.shape[..], &batch.shape[..]) {
        ([r, 4], [b]) if r == b => *r,
        _ => {
            return Err(c.mismatch(format!(
                "rois {:?} and batch_indices {:?}: expected [R, 4] and [R]",
                rois.shape, batch.shape
            )))
        }
    };
    let positive = |name: &str| -> Result<usize, ExecError> {
        let v = c.attr_int_or(name, 1)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| c.invalid(format!("{name} {v} must be positive")))
    };
    let mode = c.attr_string("mode")?.unwrap_or_else(|| "avg".into());
    let ctm = match c.attr_string("coordinate_transformation_mode")? {
        Some(m) => m,
        None if c.opset >= 16 => "half_pixel".into(),
        None => "output_half_pixel".into(),
    };
    let sampling = c.attr_int_or("sampling_ratio", 0)?;
    let spec = RoiAlignSpec {
        max: match mode.as_str() {
            "avg" => false,
            "max" => true,
            m => return Err(c.invalid(format!("mode '{m}': expected avg or max"))),
        },
        out_h: positive("output_height")?,
        out_w: positive("output_width")?,
        sampling_ratio: usize::try_from(sampling)
            .map_err(|_| c.invalid(format!("sampling_ratio {sampling} is negative")))?,
        spatial_scale: c.attr_float_or("spatial_scale", 1.0)?,
        half_pixel: match ctm.as_str() {
            "half_pixel" => true,
            "output_half_pixel" => false,
            m => {
                return Err(c.invalid(format!(
                    "coordinate_transformation_mode '{m}': expected half_pixel or output_half_pixel"
                )))
            }
        },
    };
    let shape = vec![r, ch, spec.out_h, spec.out_w];
    Ok(node(Op::RoiAlign(spec), vec![0, 1, 2], DType::F32, shape))
}

/// DFT (opset 17: `axis` attribute, default 1; opset 20: `axis` input, default -2).
fn dft(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 3)?;
    let x = c.f32_input(0)?;
    let rank = x.rank();
    let last = x.shape.last().copied().unwrap_or(0);
    if rank < 2 || !(1..=2).contains(&last) {
        return Err(c.mismatch(format!(
            "input of shape {:?}: needs a last axis of 1 (real) or 2 (complex)",
            x.shape
        )));
    }
    let axis = if c.opset >= 20 {
        c.const_scalar_i64(2, "axis")?.unwrap_or(-2)
    } else {
        c.attr_int_or("axis", 1)?
    };
    let axis = if axis < 0 { axis + rank as i64 } else { axis };
    let axis = usize::try_from(axis)
        .ok()
        .filter(|&a| a + 1 < rank)
        .ok_or_else(|| {
            c.invalid(format!(
                "axis {axis} of a rank-{rank} input (the last axis holds the complex parts)"
            ))
        })?;
    let inverse = c.attr_bool_or("inverse", false)?;
    let onesided = c.attr_bool_or("onesided", false)?;
    // IRFFT (one-sided inverse): a complex one-sided spectrum of `n / 2 + 1` bins, by
    // default from a signal of `2 * (bins - 1)`.
    if onesided && inverse && last != 2 {
        return Err(c.mismatch(format!(
            "input of shape {:?}: a one-sided inverse DFT takes a complex spectrum",
            x.shape
        )));
    }
    let length = match positive_scalar(c, 1, "dft_length")? {
        Some(n) => n,
        None if onesided && inverse && x.shape[axis] > 1 => 2 * (x.shape[axis] - 1),
        None if !(onesided && inverse) && x.shape[axis] > 0 => x.shape[axis],
        None => return Err(c.invalid("the axis is too short for a default transform length")),
    };
    let spec = DftSpec {
        axis,
        length,
        inverse,
        onesided,
    };
    let mut shape = x.shape.clone();
    shape[axis] = spec.bins();
    shape[rank - 1] = spec.out_parts();
    Ok(node(Op::Dft(spec), vec![0], DType::F32, shape))
}

/// STFT: frames of a signal, each windowed and transformed.
fn stft(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 4)?;
    let x = c.f32_input(0)?;
    let [batch, len, parts] = x.shape[..] else {
        return Err(c.mismatch(format!(
            "signal of shape {:?}: expected [batch, length, 1 or 2]",
            x.shape
        )));
    };
    if !(1..=2).contains(&parts) {
        return Err(c.mismatch(format!(
            "signal of shape {:?}: the last axis must be 1 (real) or 2 (complex)",
            x.shape
        )));
    }
    let step = positive_scalar(c, 1, "frame_step")?
        .ok_or_else(|| c.invalid("input 1 (frame_step) is required"))?;
    let window = match c.opt_input(2) {
        Some(_) => {
            let w = c.f32_input(2)?;
            match w.shape[..] {
                [n] if n > 0 => Some(n),
                _ => {
                    return Err(c.mismatch(format!(
                        "window of shape {:?}: expected one non-empty axis",
                        w.shape
                    )))
                }
            }
        }
        None => None,
    };
    let length = match (positive_scalar(c, 3, "frame_length")?, window) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => len,
    };
    if length == 0 || length > len {
        return Err(c.mismatch(format!(
            "frame length {length} for a signal of {len} samples"
        )));
    }
    let spec = StftSpec {
        step,
        length,
        window_len: window.unwrap_or(length),
        frames: (len - length) / step + 1,
        onesided: c.attr_bool_or("onesided", true)?,
    };
    let bins = if spec.onesided {
        length / 2 + 1
    } else {
        length
    };
    let inputs = if window.is_some() {
        vec![0, 2]
    } else {
        vec![0]
    };
    Ok(node(
        Op::Stft(spec),
        inputs,
        DType::F32,
        vec![batch, spec.frames, bins, 2],
    ))
}

/// MelWeightMatrix, folded at load: triangular filters mapping `dft_length / 2 + 1`
/// spectrogram bins to `num_mel_bins` mel bands, computed as the ONNX reference does.
fn mel_weight_matrix(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(5, 5)?;
    let int = |i: usize, what: &str| -> Result<usize, ExecError> {
        positive_scalar(c, i, what)?
            .ok_or_else(|| c.invalid(format!("input {i} ({what}) is required")))
    };
    let (mels, dft_length, rate) = (
        int(0, "num_mel_bins")?,
        int(1, "dft_length")?,
        int(2, "sample_rate")?,
    );
    let hz = |i: usize, what: &str| -> Result<f64, ExecError> {
        match c.const_scalar_f32(i)? {
            Some(v) => Ok(f64::from(v)),
            None => Err(c.invalid(format!("input {i} ({what}) is required"))),
        }
    };
    let (lo, hi) = (hz(3, "lower_edge_hertz")?, hz(4, "upper_edge_hertz")?);
    let code = c.attr_int_or("output_datatype", 1)?;
    if code != 1 {
        return Err(ExecError::UnsupportedDType {
            model: c.model.to_owned(),
            tensor: format!("output of {}", c.name),
            dtype: crate::loader::tensor::onnx_dtype_name(i32::try_from(code).unwrap_or(-1)),
        });
    }
    let spec_bins = dft_length / 2 + 1;
    crate::loader::consteval::check_const_size(c, &[spec_bins, mels], DType::F32)?;
    let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let (lo_mel, hi_mel) = (mel(lo), mel(hi));
    let step = (hi_mel - lo_mel) / (mels + 2) as f64;
    // Band edges as spectrogram bins (floored, as the reference's integer division does).
    let edges: Vec<i64> = (0..mels + 2)
        .map(|k| {
            let f = 700.0 * (10f64.powf((k as f64 * step + lo_mel) / 2595.0) - 1.0);
            (((dft_length + 1) as f64 * f) / rate as f64).floor() as i64
        })
        .collect();
    let mut w = vec![0.0f32; spec_bins * mels];
    let mut set = |j: i64, i: usize, v: f64| -> Result<(), ExecError> {
        let j = usize::try_from(j)
            .ok()
            .filter(|&j| j < spec_bins)
            .ok_or_else(|| {
                c.invalid(format!(
                    "band {i} reaches bin {j}, outside the {spec_bins} spectrogram bins"
                ))
            })?;
        w[j * mels + i] = v as f32;
        Ok(())
    };
    for i in 0..mels {
        let (left, center, right) = (edges[i], edges[i + 1], edges[i + 2]);
        if center == left {
            set(center, i, 1.0)?;
        } else {
            for j in left..=center {
                set(j, i, (j - left) as f64 / (center - left) as f64)?;
            }
        }
        if right > center {
            for j in center..right {
                set(j, i, (right - j) as f64 / (right - center) as f64)?;
            }
        }
    }
    Ok(Inferred::Const(vec![(
        vec![spec_bins, mels],
        TensorData::F32(w),
    )]))
}

/// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (`log_softmax`).
fn nll_loss(c: &NodeCtx<'_>, log_softmax: bool) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let x = c.f32_input(0)?;
    let t = c.typed_input(1, &[DType::I32, DType::I64])?;
    if x.rank() < 2 {
        return Err(c.mismatch(format!("input of shape {:?}: needs [N, C, d...]", x.shape)));
    }
    let mut per_element = vec![x.shape[0]];
    per_element.extend_from_slice(&x.shape[2..]);
    if t.shape != per_element {
        return Err(c.mismatch(format!(
            "target of shape {:?} for input {:?}: expected {per_element:?}",
            t.shape, x.shape
        )));
    }
    let mut inputs = vec![0, 1];
    if c.opt_input(2).is_some() {
        let w = c.f32_input(2)?;
        if w.shape != [x.shape[1]] {
            return Err(c.mismatch(format!(
                "weight of shape {:?} for {} classes",
                w.shape, x.shape[1]
            )));
        }
        inputs.push(2);
    }
    let reduction = match c.attr_string("reduction")?.as_deref().unwrap_or("mean") {
        "none" => LossReduction::None,
        "sum" => LossReduction::Sum,
        "mean" => LossReduction::Mean,
        other => return Err(c.invalid(format!("reduction '{other}': expected none, sum or mean"))),
    };
    let loss_shape = if reduction == LossReduction::None {
        per_element
    } else {
        Vec::new()
    };
    let mut outputs = vec![(DType::F32, loss_shape)];
    if log_softmax && c.num_outputs > 1 {
        outputs.push((DType::F32, x.shape.clone()));
    }
    Ok(Inferred::Node {
        op: Op::NllLoss {
            reduction,
            ignore_index: c.attr_int("ignore_index")?,
            log_softmax,
        },
        inputs,
        outputs,
    })
}

fn max_unpool(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let x = c.typed_input(0, &NUMERIC)?;
    let idx = c.typed_input(1, &[DType::I64])?;
    if x.rank() < 3 {
        return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
    }
    if idx.shape != x.shape {
        return Err(c.mismatch(format!(
            "indices shape {:?} differs from the input's {:?}",
            idx.shape, x.shape
        )));
    }
    let nsp = x.rank() - 2;
    let kernel = c
        .attr_ints("kernel_shape")?
        .ok_or_else(|| c.invalid("attribute 'kernel_shape' is required"))?;
    let kernel = c.positive("kernel_shape", &kernel)?;
    if kernel.len() != nsp {
        return Err(c.invalid(format!(
            "kernel_shape has {} entries for {nsp} spatial axes",
            kernel.len()
        )));
    }
    let strides = match c.attr_ints("strides")? {
        Some(s) => c.positive("strides", &s)?,
        None => vec![1; nsp],
    };
    let pads = match c.attr_ints("pads")? {
        Some(p) => p
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| c.invalid(format!("negative pad {v}"))))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![0; 2 * nsp],
    };
    if strides.len() != nsp || pads.len() != 2 * nsp {
        return Err(c.invalid(format!(
            "strides ({}) and pads ({}) must have {nsp} and {} entries",
            strides.len(),
            pads.len(),
            2 * nsp
        )));
    }
    let shape = match c.const_ints(2)? {
        Some(s) => {
            let s = c.positive("output_shape", &s)?;
            if s.len() != x.rank() || s[..2] != x.shape[..2] {
                return Err(c.mismatch(format!(
                    "output_shape {s:?} does not match input {:?} in rank, batch and channels",
                    x.shape
                )));
            }
            s
        }
        None => {
            let mut shape = x.shape[..2].to_vec();
            for i in 0..nsp {
                let full = x.shape[2 + i]
                    .checked_sub(1)
                    .and_then(|v| v.checked_mul(strides[i]))
                    .and_then(|v| v.checked_add(kernel[i]))
                    .ok_or_else(|| {
                        c.mismatch(format!(
                            "spatial axis {i} of extent {} has no default output size",
                            x.shape[2 + i]
                        ))
                    })?;
                let pad = pads[i] + pads[nsp + i];
                if pad >= full {
                    return Err(c.invalid(format!(
                        "pads {pad} leave no output on spatial axis {i} (extent {full})"
                    )));
                }
                shape.push(full - pad);
            }
            shape
        }
    };
    Ok(node(Op::MaxUnpool, vec![0, 1], x.dtype, shape))
}

/// LpPool, and GlobalLpPool as an LpPool whose window is the whole plane.
fn lp_pool(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.f32_input(0)?;
    if x.rank() < 3 {
        return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
    }
    let p = c.attr_int_or("p", 2)?;
    if p < 1 {
        return Err(c.invalid(format!("p = {p}; the norm's order must be at least 1")));
    }
    let nsp = x.rank() - 2;
    let mut shape = x.shape[..2].to_vec();
    let op = if c.op_type == "GlobalLpPool" {
        shape.extend(std::iter::repeat_n(1, nsp));
        Op::LpPool {
            kernel_shape: x.shape[2..].to_vec(),
            strides: vec![1; nsp],
            pads: vec![0; 2 * nsp],
            dilations: vec![1; nsp],
            ceil_mode: false,
            p,
        }
    } else {
        let kernel = c
            .attr_ints("kernel_shape")?
            .ok_or_else(|| c.invalid("attribute 'kernel_shape' is required"))?;
        let kernel = c.positive("kernel_shape", &kernel)?;
        let mut sp = spatial_attrs(c, nsp, kernel, c.opset >= 18)?;
        let ceil_mode = c.opset >= 18 && c.attr_bool_or("ceil_mode", false)?;
        shape.extend(sp.forward(c, &x.shape[2..], ceil_mode)?);
        Op::LpPool {
            kernel_shape: sp.kernel,
            strides: sp.strides,
            pads: sp.pads,
            dilations: sp.dilations,
            ceil_mode,
            p,
        }
    };
    if nsp > 3 {
        return Err(c.mismatch(format!("{nsp} spatial axes (at most 3)")));
    }
    Ok(node(op, vec![0], DType::F32, shape))
}

/// GridSample: opsets 16-19 name the modes `bilinear`/`bicubic` and take 4-D input only;
/// from 20 `linear`/`cubic` and 1 to 3 spatial axes here.
fn grid_sample(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.f32_input(0)?;
    let grid = c.f32_input(1)?;
    let r = x.rank().saturating_sub(2);
    let max_axes = if c.opset < 20 { 2 } else { 3 };
    if !(1..=max_axes).contains(&r) || (c.opset < 20 && r != 2) {
        return Err(c.mismatch(format!("input {:?}: unsupported spatial rank", x.shape)));
    }
    if grid.rank() != r + 2 || grid.shape[0] != x.shape[0] || grid.shape[r + 1] != r {
        return Err(c.mismatch(format!(
            "grid {:?} for input {:?} (expected [N, out..., {r}])",
            grid.shape, x.shape
        )));
    }
    let legacy = c.opset < 20;
    let mode_name = c.attr_string_or("mode", if legacy { "bilinear" } else { "linear" })?;
    let mode = match (mode_name.as_str(), legacy) {
        ("nearest", _) => ResizeMode::Nearest,
        ("bilinear", true) | ("linear", false) => ResizeMode::Linear,
        ("bicubic", true) | ("cubic", false) => ResizeMode::Cubic,
        (other, _) => return Err(c.invalid(format!("mode '{other}'"))),
    };
    let padding = match c.attr_string_or("padding_mode", "zeros")?.as_str() {
        "zeros" => GridPaddingMode::Zeros,
        "border" => GridPaddingMode::Border,
        "reflection" => GridPaddingMode::Reflection,
        other => return Err(c.invalid(format!("padding_mode '{other}'"))),
    };
    let mut shape = x.shape[..2].to_vec();
    shape.extend_from_slice(&grid.shape[1..=r]);
    let op = Op::GridSample {
        mode,
        padding,
        align_corners: c.attr_bool_or("align_corners", false)?,
    };
    Ok(node(op, vec![0, 1], DType::F32, shape))
}

/// Einsum: parses the equation against the inputs' ranks. Letters get ids 0-51 (`A-Z`,
/// `a-z`), ellipsis axes 52 onwards (right-aligned across operands, as numpy broadcasts
/// them). Without `->` the output is the ellipsis axes, then the letters used once, in
/// alphabetical order. A letter's extent must agree between operands, or be 1 there.
fn einsum(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    const ELLIPSIS: u8 = 52;
    let eq: String = c
        .attr_string("equation")?
        .ok_or_else(|| c.invalid("attribute 'equation' is required"))?
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let specs: Vec<&str> = lhs.split(',').collect();
    c.arity(specs.len(), specs.len())?;
    let mut inputs = Vec::with_capacity(specs.len());
    for i in 0..specs.len() {
        inputs.push(c.typed_input(i, &[DType::F32, DType::F64])?);
    }
    if let Some(first) = inputs.first() {
        for v in &inputs[1..] {
            same_dtype(c, first, v)?;
        }
    }
    let dtype = inputs.first().map_or(DType::F32, |v| v.dtype);
    let letter = |ch: char| -> Result<u8, ExecError> {
        match ch {
            'A'..='Z' => Ok(ch as u8 - b'A'),
            'a'..='z' => Ok(ch as u8 - b'a' + 26),
            _ => Err(c.invalid(format!("'{ch}' in equation '{eq}'"))),
        }
    };
    // Per operand: its letters with `None` where the ellipsis stands.
    let parse = |spec: &str| -> Result<Vec<Option<u8>>, ExecError> {
        let mut out = Vec::new();
        let mut rest = spec;
        let mut seen_ellipsis = false;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("...") {
                if seen_ellipsis {
                    return Err(c.invalid(format!("two ellipses in '{spec}'")));
                }
                seen_ellipsis = true;
                out.push(None);
                rest = r;
            } else {
                let ch = rest.chars().next().unwrap_or(' ');
                out.push(Some(letter(ch)?));
                rest = &rest[ch.len_utf8()..];
            }
        }
        Ok(out)
    };
    let parsed: Vec<Vec<Option<u8>>> = specs.iter().map(|s| parse(s)).collect::<Result<_, _>>()?;
    // Ellipsis axes of each operand, and of the widest.
    let mut ell = Vec::with_capacity(parsed.len());
    for (p, x) in parsed.iter().zip(&inputs) {
        let named = p.iter().filter(|l| l.is_some()).count();
        let e = if p.contains(&None) {
            x.rank().checked_sub(named)
        } else {
            (x.rank() == named).then_some(0)
        };
        ell.push(e.ok_or_else(|| {
            c.mismatch(format!(
                "input of shape {:?} for subscripts {} letters",
                x.shape, named
            ))
        })?);
    }
    let e_max = ell.iter().copied().max().unwrap_or(0);
    let ids = |e_max: usize| (0..e_max).map(|j| ELLIPSIS + j as u8);
    if e_max > usize::from(u8::MAX - ELLIPSIS) {
        return Err(c.invalid("too many ellipsis axes"));
    }
    let mut terms = Vec::with_capacity(parsed.len());
    let mut sizes = vec![1usize; usize::from(ELLIPSIS) + e_max];
    let mut fixed = vec![false; sizes.len()];
    for ((p, x), &e) in parsed.iter().zip(&inputs).zip(&ell) {
        let mut term = Vec::with_capacity(x.rank());
        for l in p {
            match l {
                Some(l) => term.push(*l),
                None => term.extend(ids(e_max).skip(e_max - e)),
            }
        }
        for (&l, &d) in term.iter().zip(&x.shape) {
            let slot = usize::from(l);
            if d != 1 {
                if fixed[slot] && sizes[slot] != d {
                    return Err(c.mismatch(format!(
                        "an axis of {d} where the same subscript has {}",
                        sizes[slot]
                    )));
                }
                sizes[slot] = d;
                fixed[slot] = true;
            }
        }
        terms.push(term);
    }
    let used = |l: u8| {
        terms
            .iter()
            .map(|t| t.iter().filter(|&&x| x == l).count())
            .sum::<usize>()
    };
    let output: Vec<u8> = match rhs {
        Some(r) => {
            let mut out = Vec::new();
            for l in parse(r)? {
                match l {
                    Some(l) if used(l) == 0 => {
                        return Err(
                            c.invalid(format!("output subscript of '{eq}' not in any input"))
                        )
                    }
                    Some(l) if out.contains(&l) => {
                        return Err(c.invalid(format!("output subscript repeated in '{eq}'")))
                    }
                    Some(l) => out.push(l),
                    None => out.extend(ids(e_max)),
                }
            }
            out
        }
        None => ids(e_max)
            .chain((0..ELLIPSIS).filter(|&l| used(l) == 1))
            .collect(),
    };
    let shape = output.iter().map(|&l| sizes[usize::from(l)]).collect();
    let op = Op::Einsum {
        terms,
        output,
        sizes,
    };
    Ok(node(op, (0..specs.len()).collect(), dtype, shape))
}

/// RNN, GRU and LSTM: shapes checked against `hidden_size` (or `R`'s last axis), the
/// activation list resolved with its alphas and betas (each function that takes one consumes
/// the next given value, else its operator's default).
/// `Attention` (opsets 23-25): shapes of `Q, K, V` (all 3-D with the head-count attributes,
/// or all 4-D), the cache pair, `nonpad_kv_seqlen` (opset 24) and the mask checked; outputs
/// as many as declared.
fn attention(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    use crate::kernels::QkOutput;
    c.arity(3, if c.opset >= 24 { 7 } else { 6 })?;
    let (q, k, v) = (c.f32_input(0)?, c.f32_input(1)?, c.f32_input(2)?);
    let rank = q.rank();
    if !matches!(rank, 3 | 4) || k.rank() != rank || v.rank() != rank {
        return Err(c.mismatch(format!(
            "Q, K and V must be all 3-D or all 4-D, got ranks {}, {} and {}",
            rank,
            k.rank(),
            v.rank()
        )));
    }
    let heads_attr = |name: &str| -> Result<Option<usize>, ExecError> {
        match c.attr_int(name)? {
            None => Ok(None),
            Some(n) if n > 0 => Ok(Some(n as usize)),
            Some(n) => Err(c.invalid(format!("{name} must be positive, got {n}"))),
        }
    };
    let (qh_attr, kvh_attr) = (heads_attr("q_num_heads")?, heads_attr("kv_num_heads")?);
    let batch = q.shape[0];
    if k.shape[0] != batch || v.shape[0] != batch {
        return Err(c.mismatch(format!(
            "batch sizes differ: Q {}, K {}, V {}",
            batch, k.shape[0], v.shape[0]
        )));
    }
    let (q_heads, kv_heads, q_seq, kv_seq, head, v_head);
    if rank == 3 {
        let (Some(qh), Some(kvh)) = (qh_attr, kvh_attr) else {
            return Err(
                c.invalid("3-D Q, K and V need the q_num_heads and kv_num_heads attributes")
            );
        };
        let per = |what: &str, hidden: usize, heads: usize| {
            if hidden.is_multiple_of(heads) {
                Ok(hidden / heads)
            } else {
                Err(c.mismatch(format!(
                    "{what}'s hidden size {hidden} is not a multiple of {heads} heads"
                )))
            }
        };
        (q_heads, kv_heads, q_seq, kv_seq) = (qh, kvh, q.shape[1], k.shape[1]);
        head = per("Q", q.shape[2], qh)?;
        if per("K", k.shape[2], kvh)? != head {
            return Err(c.mismatch(format!(
                "K's head size {} differs from Q's {head}",
                k.shape[2] / kvh
            )));
        }
        v_head = per("V", v.shape[2], kvh)?;
        if v.shape[1] != kv_seq {
            return Err(c.mismatch(format!("K has {kv_seq} rows, V {}", v.shape[1])));
        }
    } else {
        if c.opset >= 25 && (qh_attr.is_some() || kvh_attr.is_some()) {
            return Err(c.invalid("q_num_heads and kv_num_heads must not be given with 4-D inputs"));
        }
        (q_heads, q_seq, head) = (q.shape[1], q.shape[2], q.shape[3]);
        (kv_heads, kv_seq, v_head) = (k.shape[1], k.shape[2], v.shape[3]);
        if k.shape[3] != head || v.shape[1] != kv_heads || v.shape[2] != kv_seq {
            return Err(c.mismatch(format!(
                "K {:?} and V {:?} do not fit Q {:?}",
                k.shape, v.shape, q.shape
            )));
        }
        for (name, given, actual) in [
            ("q_num_heads", qh_attr, q_heads),
            ("kv_num_heads", kvh_attr, kv_heads),
        ] {
            if given.is_some_and(|g| g != actual) {
                return Err(c.mismatch(format!(
                    "{name} is {}, the inputs have {actual} heads",
                    given.unwrap_or(0)
                )));
            }
        }
    }
    if kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        return Err(c.mismatch(format!(
            "{kv_heads} key/value heads do not divide {q_heads} query heads"
        )));
    }
    let mut inputs = vec![0, 1, 2];
    let mut present = [false; 3];
    let mask = c.opt_input(3);
    let (past_key, past_value) = (c.opt_input(4), c.opt_input(5));
    let nonpad = c.opt_input(6);
    let mut past_seq = 0;
    match (past_key, past_value) {
        (None, None) => {}
        (Some(pk), Some(pv)) => {
            for (name, t) in [("past_key", pk), ("past_value", pv)] {
                if t.dtype != DType::F32 {
                    return Err(c.mismatch(format!("{name} has type {}, Q {}", t.dtype, q.dtype)));
                }
            }
            past_seq = pk.shape.get(2).copied().unwrap_or(0);
            if pk.shape != [batch, kv_heads, past_seq, head]
                || pv.shape != [batch, kv_heads, past_seq, v_head]
            {
                return Err(c.mismatch(format!(
                    "past_key {:?} / past_value {:?}: expected [{batch}, {kv_heads}, past, {head}] / [.., {v_head}]",
                    pk.shape, pv.shape
                )));
            }
        }
        _ => return Err(c.invalid("past_key and past_value must be given together")),
    }
    let total = past_seq + kv_seq;
    let mut mask_shape = None;
    if let Some(m) = mask {
        if !matches!(m.dtype, DType::Bool | DType::F32) {
            return Err(c.mismatch(format!(
                "attn_mask has type {}; AegisRT takes bool or float masks",
                m.dtype
            )));
        }
        if m.rank() == 0 || m.rank() > 4 {
            return Err(c.mismatch(format!("attn_mask has rank {}, expected 1 to 4", m.rank())));
        }
        let mut ms = [1usize; 4];
        ms[4 - m.rank()..].copy_from_slice(&m.shape);
        let fits = ms[..3]
            .iter()
            .zip([batch, q_heads, q_seq])
            .all(|(&d, want)| d == 1 || d == want);
        if !fits || ms[3] > total {
            return Err(c.mismatch(format!(
                "attn_mask {:?} does not broadcast to [{batch}, {q_heads}, {q_seq}, {total}]",
                m.shape
            )));
        }
        mask_shape = Some(ms);
        present[0] = true;
        inputs.push(3);
    }
    if past_key.is_some() {
        present[1] = true;
        inputs.extend([4, 5]);
    }
    if let Some(n) = nonpad {
        if past_key.is_some() {
            return Err(c.invalid("nonpad_kv_seqlen cannot be combined with past_key/past_value"));
        }
        if n.dtype != DType::I64 || n.shape != [batch] {
            return Err(c.mismatch(format!(
                "nonpad_kv_seqlen must be int64 [{batch}], got {} {:?}",
                n.dtype, n.shape
            )));
        }
        present[2] = true;
        inputs.push(6);
    }
    let qk_output = match c.attr_int_or("qk_matmul_output_mode", 0)? {
        0 => QkOutput::Raw,
        1 => QkOutput::Capped,
        2 => QkOutput::Biased,
        3 => QkOutput::Softmax,
        m => return Err(c.invalid(format!("qk_matmul_output_mode must be 0 to 3, got {m}"))),
    };
    // Scores are computed in f32 whatever the precision asked for (16-bit inputs included).
    if let Some(p) = c.attr_int("softmax_precision")? {
        if ![1, 10, 11, 16].contains(&p) {
            return Err(c.invalid(format!(
                "softmax_precision must be 1, 10, 11 or 16 (float, float16, double, bfloat16), got {p}"
            )));
        }
    }
    let window = |name: &str| -> Result<Option<usize>, ExecError> {
        match c.attr_int_or(name, -1)? {
            -1 => Ok(None),
            w if w >= 0 => Ok(Some(w as usize)),
            w => Err(c.invalid(format!("{name} must be -1 or non-negative, got {w}"))),
        }
    };
    let scale = match c.attr_float("scale")? {
        Some(s) => s,
        None => 1.0 / (head as f32).sqrt(),
    };
    let spec = AttentionSpec {
        batch,
        q_heads,
        kv_heads,
        q_seq,
        kv_seq,
        past_seq,
        head,
        v_head,
        rank3: rank == 3,
        scale,
        causal: c.attr_bool_or("is_causal", false)?,
        softcap: c.attr_float_or("softcap", 0.0)?.max(0.0),
        qk_output,
        left_window: window("left_window_size")?,
        right_window: window("right_window_size")?,
        mask_shape,
    };
    let y = if rank == 3 {
        vec![batch, q_seq, q_heads * v_head]
    } else {
        vec![batch, q_heads, q_seq, v_head]
    };
    let shapes = [
        y,
        vec![batch, kv_heads, total, head],
        vec![batch, kv_heads, total, v_head],
        vec![batch, q_heads, q_seq, total],
    ];
    let outputs = shapes
        .into_iter()
        .take(c.num_outputs.clamp(1, 4))
        .map(|s| (DType::F32, s))
        .collect();
    Ok(Inferred::Node {
        op: Op::Attention { spec, present },
        inputs,
        outputs,
    })
}

/// `BitCast` (opset 26): the same bytes as another type of the same size.
fn bit_cast(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.input(0)?;
    let to = to_attr(c)?;
    let sub_byte = |d: DType| matches!(d, DType::Narrow(n) if n.bits() < 8);
    if sub_byte(x.dtype) || sub_byte(to) {
        return Err(c.mismatch(format!(
            "{} to {}: a 4- or 2-bit element has no byte of its own to reinterpret",
            x.dtype, to
        )));
    }
    if to.size_bytes() != x.dtype.size_bytes() {
        return Err(c.mismatch(format!(
            "{} ({} bytes) cannot be reinterpreted as {} ({} bytes)",
            x.dtype,
            x.dtype.size_bytes(),
            to,
            to.size_bytes()
        )));
    }
    Ok(node(Op::BitCast { to }, vec![0], to, x.shape.clone()))
}

/// `TensorScatter` (opset 24): `update` differs from `past_cache` only along `axis`.
fn tensor_scatter(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let (past, update) = (c.input(0)?, c.input(1)?);
    if update.dtype != past.dtype {
        return Err(c.mismatch(format!(
            "update has type {}, past_cache {}",
            update.dtype, past.dtype
        )));
    }
    let axis = c.axis(c.attr_int_or("axis", -2)?, past.rank())?;
    if axis == 0 {
        return Err(c.invalid("axis cannot be the batch axis 0"));
    }
    let fits = update.rank() == past.rank()
        && update.shape[axis] <= past.shape[axis]
        && (0..past.rank()).all(|d| d == axis || update.shape[d] == past.shape[d]);
    if !fits {
        return Err(c.mismatch(format!(
            "update {:?} must match past_cache {:?} but along axis {axis}, and be no longer there",
            update.shape, past.shape
        )));
    }
    let circular = match c.attr_string_or("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        m => return Err(c.invalid(format!("mode must be linear or circular, got '{m}'"))),
    };
    let mut inputs = vec![0, 1];
    if let Some(w) = c.opt_input(2) {
        if w.dtype != DType::I64 || w.shape != past.shape[..1] {
            return Err(c.mismatch(format!(
                "write_indices must be int64 [{}], got {} {:?}",
                past.shape[0], w.dtype, w.shape
            )));
        }
        inputs.push(2);
    }
    Ok(node(
        Op::TensorScatter { axis, circular },
        inputs,
        past.dtype,
        past.shape.clone(),
    ))
}

/// `LpNormalization`: `p` 1 or 2 (default 2), `axis` default -1.
fn lp_normalization(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.f32_input(0)?;
    let axis = c.axis(c.attr_int_or("axis", -1)?, x.rank())?;
    let p = match c.attr_int_or("p", 2)? {
        1 => 1,
        2 => 2,
        p => return Err(c.invalid(format!("p must be 1 or 2, got {p}"))),
    };
    Ok(node(
        Op::LpNormalization { axis, p },
        vec![0],
        DType::F32,
        x.shape.clone(),
    ))
}

/// `RotaryEmbedding` (opset 23): `X` 4-D `[batch, heads, seq, head]` or 3-D with
/// `num_heads`; the caches `[positions, rot / 2]` with `position_ids [batch, seq]`, else
/// `[batch, seq, rot / 2]`.
fn rotary_embedding(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 4)?;
    let x = c.f32_input(0)?;
    let (batch, heads, seq, head, rank3) = match (x.shape.as_slice(), c.attr_int("num_heads")?) {
        (&[b, h, s, d], _) => (b, h, s, d, false),
        (&[b, s, hidden], Some(h)) if h > 0 => {
            let h = h as usize;
            if !hidden.is_multiple_of(h) {
                return Err(c.mismatch(format!(
                    "hidden size {hidden} is not a multiple of {h} heads"
                )));
            }
            (b, h, s, hidden / h, true)
        }
        (&[_, _, _], _) => return Err(c.invalid("a 3-D input needs a positive num_heads")),
        _ => return Err(c.mismatch(format!("X must be 3-D or 4-D, got {:?}", x.shape))),
    };
    let rot = match c.attr_int_or("rotary_embedding_dim", 0)? {
        0 => head,
        r if r > 0 && (r as usize) <= head && r % 2 == 0 => r as usize,
        r => {
            return Err(c.invalid(format!(
                "rotary_embedding_dim {r} must be even and at most the head size {head}"
            )))
        }
    };
    if !rot.is_multiple_of(2) {
        return Err(c.mismatch(format!(
            "head size {head} is odd: its features do not pair up"
        )));
    }
    let (cos, sin) = (c.f32_input(1)?, c.f32_input(2)?);
    let positions = match c.opt_input(3) {
        Some(p) => {
            if p.dtype != DType::I64 || p.shape != [batch, seq] {
                return Err(c.mismatch(format!(
                    "position_ids must be int64 [{batch}, {seq}], got {} {:?}",
                    p.dtype, p.shape
                )));
            }
            match cos.shape.as_slice() {
                &[n, _] => n,
                _ => 0,
            }
        }
        None => 0,
    };
    let want: Vec<usize> = if c.opt_input(3).is_some() {
        vec![positions, rot / 2]
    } else {
        vec![batch, seq, rot / 2]
    };
    for (name, t) in [("cos_cache", cos), ("sin_cache", sin)] {
        if t.shape != want {
            return Err(c.mismatch(format!("{name} is {:?}, expected {want:?}", t.shape)));
        }
    }
    let inputs = if c.opt_input(3).is_some() {
        vec![0, 1, 2, 3]
    } else {
        vec![0, 1, 2]
    };
    let spec = RotarySpec {
        batch,
        heads,
        seq,
        head,
        rot,
        rank3,
        interleaved: c.attr_bool_or("interleaved", false)?,
        positions,
    };
    Ok(node(
        Op::RotaryEmbedding { spec },
        inputs,
        DType::F32,
        x.shape.clone(),
    ))
}

fn recurrent(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    use crate::kernels::{RnnActivation as A, RnnCell, RnnDirection, RnnSpec};
    let cell = match c.op_type {
        "RNN" => RnnCell::Simple,
        "GRU" => RnnCell::Gru {
            linear_before_reset: c.attr_bool_or("linear_before_reset", false)?,
        },
        _ => RnnCell::Lstm {
            input_forget: c.attr_bool_or("input_forget", false)?,
        },
    };
    let is_lstm = matches!(cell, RnnCell::Lstm { .. });
    c.arity(3, if is_lstm { 8 } else { 6 })?;
    let x = c.f32_input(0)?;
    c.f32_input(1)?;
    let r = c.f32_input(2)?;
    let direction = match c.attr_string_or("direction", "forward")?.as_str() {
        "forward" => RnnDirection::Forward,
        "reverse" => RnnDirection::Reverse,
        "bidirectional" => RnnDirection::Bidirectional,
        other => return Err(c.invalid(format!("direction '{other}'"))),
    };
    let batch_first = c.opset >= 14 && c.attr_bool_or("layout", false)?;
    if x.rank() != 3 || r.rank() != 3 {
        return Err(c.mismatch(format!("X {:?} and R {:?} must be 3-D", x.shape, r.shape)));
    }
    let hidden = match c.attr_int("hidden_size")? {
        Some(h) => c.positive("hidden_size", &[h])?[0],
        None => r.shape[2],
    };
    let (dirs, g) = (direction.count(), cell.gates());
    let (seq, batch, input) = if batch_first {
        (x.shape[1], x.shape[0], x.shape[2])
    } else {
        (x.shape[0], x.shape[1], x.shape[2])
    };
    let expect = |i: usize, what: &str, shape: Vec<usize>| -> Result<bool, ExecError> {
        match c.opt_input(i) {
            None => Ok(false),
            Some(v) => {
                if v.shape != shape {
                    return Err(c.mismatch(format!("{what} {:?} is not {shape:?}", v.shape)));
                }
                Ok(true)
            }
        }
    };
    expect(1, "W", vec![dirs, g * hidden, input])?;
    expect(2, "R", vec![dirs, g * hidden, hidden])?;
    let state = if batch_first {
        vec![batch, dirs, hidden]
    } else {
        vec![dirs, batch, hidden]
    };
    let mut present = [false; 5];
    present[0] = expect(3, "B", vec![dirs, 2 * g * hidden])?;
    if let Some(v) = c.opt_input(4) {
        if v.dtype != DType::I32 {
            return Err(c.invalid(format!("sequence_lens is {}, not int32", v.dtype)));
        }
        present[1] = expect(4, "sequence_lens", vec![batch])?;
    }
    present[2] = expect(5, "initial_h", state.clone())?;
    if is_lstm {
        present[3] = expect(6, "initial_c", state.clone())?;
        present[4] = expect(7, "P", vec![dirs, 3 * hidden])?;
    }
    for (i, &p) in present.iter().enumerate() {
        if p && i != 1 {
            c.f32_input(i + 3)?;
        }
    }
    let defaults: &[&str] = match cell {
        RnnCell::Simple => &["Tanh"],
        RnnCell::Gru { .. } => &["Sigmoid", "Tanh"],
        RnnCell::Lstm { .. } => &["Sigmoid", "Tanh", "Tanh"],
    };
    let nf = cell.functions();
    let names: Vec<String> = match c.attr_strings("activations")? {
        // One list for both directions, or one per direction.
        Some(l) if l.len() == nf * dirs => l,
        Some(l) if l.len() == nf => l.iter().cycle().take(nf * dirs).cloned().collect(),
        Some(l) => {
            return Err(c.invalid(format!(
                "{} activations for {nf} functions in {dirs} direction(s)",
                l.len()
            )))
        }
        None => defaults
            .iter()
            .cycle()
            .take(nf * dirs)
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let alphas = c.attr_floats("activation_alpha")?.unwrap_or_default();
    let betas = c.attr_floats("activation_beta")?.unwrap_or_default();
    let (mut ai, mut bi) = (alphas.iter(), betas.iter());
    let next =
        |it: &mut std::slice::Iter<'_, f32>, default: f32| it.next().copied().unwrap_or(default);
    let mut activations = Vec::with_capacity(names.len());
    for n in &names {
        activations.push(match n.to_ascii_lowercase().as_str() {
            "sigmoid" => A::Sigmoid,
            "tanh" => A::Tanh,
            "relu" => A::Relu,
            "hardsigmoid" => A::HardSigmoid(next(&mut ai, 0.2), next(&mut bi, 0.5)),
            "leakyrelu" => A::LeakyRelu(next(&mut ai, 0.01)),
            "thresholdedrelu" => A::ThresholdedRelu(next(&mut ai, 1.0)),
            "scaledtanh" => A::ScaledTanh(next(&mut ai, 1.0), next(&mut bi, 1.0)),
            "affine" => A::Affine(next(&mut ai, 1.0), next(&mut bi, 0.0)),
            "elu" => A::Elu(next(&mut ai, 1.0)),
            "softsign" => A::Softsign,
            "softplus" => A::Softplus,
            other => return Err(c.invalid(format!("activation '{other}'"))),
        });
    }
    let clip = match c.attr_float("clip")? {
        Some(v) if v > 0.0 => Some(v),
        Some(v) => return Err(c.invalid(format!("clip {v} must be positive"))),
        None => None,
    };
    let y = if batch_first {
        vec![batch, seq, dirs, hidden]
    } else {
        vec![seq, dirs, batch, hidden]
    };
    let n_out = c.num_outputs.clamp(1, if is_lstm { 3 } else { 2 });
    let outputs = [y, state.clone(), state]
        .into_iter()
        .take(n_out)
        .map(|s| (DType::F32, s))
        .collect();
    let mut inputs = vec![0, 1, 2];
    inputs.extend((0..5).filter(|&i| present[i]).map(|i| i + 3));
    let spec = RnnSpec {
        cell,
        hidden,
        direction,
        activations,
        clip,
        batch_first,
    };
    Ok(Inferred::Node {
        op: Op::Recurrent { spec, present },
        inputs,
        outputs,
    })
}

fn reverse_sequence(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.typed_input(0, VALUES)?;
    let lens = c.typed_input(1, &[DType::I64])?;
    let batch_axis = c.attr_int_or("batch_axis", 1)?;
    let time_axis = c.attr_int_or("time_axis", 0)?;
    let (batch_axis, time_axis) = match (batch_axis, time_axis) {
        (0, 1) => (0, 1),
        (1, 0) => (1, 0),
        _ => {
            return Err(c.invalid(format!(
                "batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1"
            )))
        }
    };
    if x.rank() < 2 || lens.shape != [x.shape[batch_axis]] {
        return Err(c.mismatch(format!(
            "sequence_lens {:?} for input {:?}",
            lens.shape, x.shape
        )));
    }
    let op = Op::ReverseSequence {
        batch_axis,
        time_axis,
    };
    Ok(node(op, vec![0, 1], x.dtype, x.shape.clone()))
}

fn affine_grid(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let theta = c.f32_input(0)?;
    let size = c
        .const_ints(1)?
        .ok_or_else(|| c.invalid("size must be a constant known at load (shapes are static)"))?;
    let size = c.non_negative("size", &size)?;
    let r = size.len().saturating_sub(2);
    if (r != 2 && r != 3) || theta.shape != [size[0], r, r + 1] {
        return Err(c.mismatch(format!(
            "theta {:?} for size {size:?} (expected [N, 2, 3] with 4 sizes or [N, 3, 4] with 5)",
            theta.shape
        )));
    }
    let mut shape = vec![size[0]];
    shape.extend_from_slice(&size[2..]);
    shape.push(r);
    let op = Op::AffineGrid {
        spatial: size[2..].to_vec(),
        align_corners: c.attr_bool_or("align_corners", false)?,
    };
    Ok(node(op, vec![0], DType::F32, shape))
}

/// CenterCropPad is a Pad with negative pads where it crops (centred, the odd cell at the
/// end), so it runs as one.
fn center_crop_pad(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.f32_input(0)?;
    let target = c
        .const_ints(1)?
        .ok_or_else(|| c.invalid("shape must be a constant known at load (shapes are static)"))?;
    let target = c.non_negative("shape", &target)?;
    let r = x.rank();
    let axes = match c.attr_ints("axes")? {
        Some(a) => c.axes(&a, r)?,
        None => (0..r).collect(),
    };
    if axes.len() != target.len() {
        return Err(c.mismatch(format!("shape {target:?} for axes {axes:?}")));
    }
    let mut pads = vec![0i64; 2 * r];
    let mut shape = x.shape.clone();
    for (&a, &s) in axes.iter().zip(&target) {
        let (d, s) = (x.shape[a] as i64, s as i64);
        let begin = if s < d { -((d - s) / 2) } else { (s - d) / 2 };
        pads[a] = begin;
        pads[r + a] = s - d - begin;
        shape[a] = s as usize;
    }
    let op = Op::Pad {
        mode: PadMode::Constant,
        pads,
        value: 0.0,
    };
    Ok(node(op, vec![0], DType::F32, shape))
}

fn gather_nd(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let data = c.typed_input(0, VALUES)?;
    let idx = c.typed_input(1, &[DType::I64])?;
    let b = c.attr_int_or("batch_dims", 0)?;
    let (r, q) = (data.rank(), idx.rank());
    let b = usize::try_from(b)
        .ok()
        .filter(|&b| b < r.min(q))
        .ok_or_else(|| {
            c.invalid(format!(
                "batch_dims {b} for data rank {r}, indices rank {q}"
            ))
        })?;
    let k = idx.shape[q - 1];
    if data.shape[..b] != idx.shape[..b] || k < 1 || b + k > r {
        return Err(c.mismatch(format!(
            "indices {:?} for data {:?} with batch_dims {b}",
            idx.shape, data.shape
        )));
    }
    let shape = idx.shape[..q - 1]
        .iter()
        .chain(&data.shape[b + k..])
        .copied()
        .collect();
    Ok(node(
        Op::GatherNd { batch_dims: b },
        vec![0, 1],
        data.dtype,
        shape,
    ))
}

/// EyeLike's output depends only on its input's (static) shape: a constant.
/// HannWindow, HammingWindow and BlackmanWindow: a load-time constant of `size` (known at
/// load) values, `a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N)` with `N = size` (periodic, the
/// default) or `size - 1`, computed in f64 and converted to `output_datatype` (float by
/// default; integer types truncate toward zero, as the reference's cast does).
fn window(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let size = match c.const_ints(0)?.as_deref() {
        Some([n]) => {
            usize::try_from(*n).map_err(|_| c.invalid(format!("size {n} must not be negative")))?
        }
        Some(v) => {
            return Err(c.mismatch(format!("size must be a scalar, has {} elements", v.len())))
        }
        None => return Err(c.invalid("input 0 (size) is required")),
    };
    let code = c.attr_int_or("output_datatype", 1)?;
    let dtype = i32::try_from(code)
        .ok()
        .and_then(DType::from_onnx)
        .filter(|d| {
            matches!(
                d,
                DType::F32 | DType::I32 | DType::I64 | DType::U8 | DType::I8
            )
        })
        .ok_or_else(|| ExecError::UnsupportedDType {
            model: c.model.to_owned(),
            tensor: format!("output of {}", c.name),
            dtype: crate::loader::tensor::onnx_dtype_name(i32::try_from(code).unwrap_or(-1)),
        })?;
    crate::loader::consteval::check_const_size(c, &[size], dtype)?;
    let periodic = c.attr_bool_or("periodic", true)?;
    let (a0, a1, a2) = match c.op_type {
        "HannWindow" => (0.5, 0.5, 0.0),
        "HammingWindow" => (25.0 / 46.0, 21.0 / 46.0, 0.0),
        _ => (0.42, 0.5, 0.08),
    };
    // A one-point symmetric window divides 0 by 0 (NaN), as the reference does.
    let n_div = if periodic {
        size as f64
    } else {
        size as f64 - 1.0
    };
    let tau = 2.0 * std::f64::consts::PI;
    let w = (0..size).map(|n| {
        let t = tau * n as f64 / n_div;
        a0 - a1 * t.cos() + a2 * (2.0 * t).cos()
    });
    let data = match dtype {
        DType::F32 => TensorData::F32(w.map(|v| v as f32).collect()),
        DType::I32 => TensorData::I32(w.map(|v| v as i32).collect()),
        DType::I64 => TensorData::I64(w.map(|v| v as i64).collect()),
        DType::U8 => TensorData::U8(w.map(|v| v as u8).collect()),
        _ => TensorData::I8(w.map(|v| v as i8).collect()),
    };
    Ok(Inferred::Const(vec![(vec![size], data)]))
}

fn eye_like(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.input(0)?;
    if x.rank() != 2 {
        return Err(c.mismatch(format!("input rank {} (must be 2)", x.rank())));
    }
    let dtype = match c.attr_int("dtype")? {
        Some(t) => i32::try_from(t)
            .ok()
            .and_then(DType::from_onnx)
            .ok_or_else(|| ExecError::UnsupportedDType {
                model: c.model.to_owned(),
                tensor: format!("output of {}", c.name),
                dtype: crate::loader::tensor::onnx_dtype_name(i32::try_from(t).unwrap_or(-1)),
            })?,
        None => x.dtype,
    };
    let (rows, cols) = (x.shape[0], x.shape[1]);
    let k = c.attr_int_or("k", 0)?;
    crate::loader::consteval::check_const_size(c, &x.shape, dtype)?;
    let ones: Vec<bool> = (0..rows * cols)
        .map(|i| (i % cols) as i64 - (i / cols) as i64 == k)
        .collect();
    let data = match dtype {
        DType::F32 => TensorData::F32(ones.iter().map(|&o| f32::from(u8::from(o))).collect()),
        DType::I32 => TensorData::I32(ones.iter().map(|&o| i32::from(o)).collect()),
        DType::I64 => TensorData::I64(ones.iter().map(|&o| i64::from(o)).collect()),
        DType::Bool => TensorData::Bool(ones.iter().map(|&o| u8::from(o)).collect()),
        DType::U8 => TensorData::U8(ones.iter().map(|&o| u8::from(o)).collect()),
        DType::I8 => TensorData::I8(ones.iter().map(|&o| i8::from(o)).collect()),
        // 0x3c00 is 1.0 in binary16.
        DType::F16 => TensorData::F16(ones.iter().map(|&o| if o { 0x3c00 } else { 0 }).collect()),
        // 0x3f80 is 1.0 in bfloat16.
        DType::BF16 => TensorData::BF16(ones.iter().map(|&o| if o { 0x3f80 } else { 0 }).collect()),
        DType::F64 => TensorData::F64(ones.iter().map(|&o| f64::from(u8::from(o))).collect()),
        DType::I16 => TensorData::I16(ones.iter().map(|&o| i16::from(o)).collect()),
        DType::U16 => TensorData::U16(ones.iter().map(|&o| u16::from(o)).collect()),
        DType::U32 => TensorData::U32(ones.iter().map(|&o| u32::from(o)).collect()),
        DType::U64 => TensorData::U64(ones.iter().map(|&o| u64::from(o)).collect()),
        DType::Narrow(_) => return Err(c.invalid(format!("EyeLike does not produce {dtype}"))),
    };
    Ok(Inferred::Const(vec![(x.shape.clone(), data)]))
}

fn mean_variance_norm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.f32_input(0)?;
    let axes = c.attr_ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    let mut resolved = Vec::with_capacity(axes.len());
    for a in axes {
        let a = c.axis(a, x.rank())?;
        if resolved.contains(&a) {
            return Err(c.invalid(format!("axis {a} repeated in axes")));
        }
        resolved.push(a);
    }
    Ok(node(
        Op::MeanVarianceNormalization { axes: resolved },
        vec![0],
        DType::F32,
        x.shape.clone(),
    ))
}

/// GroupNormalization: `scale` and `bias` per group (opset 18) or per channel (opset 21).
fn group_norm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let x = c.f32_input(0)?;
    if x.rank() < 3 {
        return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
    }
    let groups = c
        .attr_int("num_groups")?
        .ok_or_else(|| c.invalid("attribute 'num_groups' is required"))?;
    let groups = c.positive("num_groups", &[groups])?[0];
    let ch = x.shape[1];
    if !ch.is_multiple_of(groups) {
        return Err(c.mismatch(format!("{ch} channels in {groups} groups")));
    }
    if c.attr_int_or("stash_type", 1)? != 1 {
        return Err(c.invalid("stash_type other than float (1) is unsupported"));
    }
    let params = if c.opset >= 21 { ch } else { groups };
    for (i, what) in [(1, "scale"), (2, "bias")] {
        let v = c.f32_input(i)?;
        if v.shape != [params] {
            return Err(c.mismatch(format!("{what} {:?} is not [{params}]", v.shape)));
        }
    }
    let op = Op::GroupNormalization {
        groups,
        epsilon: c.attr_float_or("epsilon", 1e-5)?,
    };
    Ok(node(op, vec![0, 1, 2], DType::F32, x.shape.clone()))
}

fn gemm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let a = c.f32_input(0)?;
    let b = c.f32_input(1)?;
    if a.rank() != 2 || b.rank() != 2 {
        return Err(c.mismatch(format!(
            "inputs must be 2-D, got {:?} and {:?}",
            a.shape, b.shape
        )));
    }
    let trans_a = c.attr_bool_or("transA", false)?;
    let trans_b = c.attr_bool_or("transB", false)?;
    let (m, ka) = if trans_a {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (kb, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if ka != kb {
        return Err(c.mismatch(format!(
            "inner dimensions differ: {:?} x {:?} (transA={trans_a}, transB={trans_b})",
            a.shape, b.shape
        )));
    }
    let mut inputs = vec![0, 1];
    if let Some(cv) = c.opt_input(2) {
        if cv.dtype != DType::F32 || broadcast(&cv.shape, &[m, n]).as_deref() != Some(&[m, n]) {
            return Err(c.mismatch(format!("C {:?} does not broadcast to [{m}, {n}]", cv.shape)));
        }
        inputs.push(2);
    }
    let op = Op::Gemm {
        alpha: c.attr_float_or("alpha", 1.0)?,
        beta: c.attr_float_or("beta", 1.0)?,
        trans_a,
        trans_b,
    };
    Ok(node(op, inputs, DType::F32, vec![m, n]))
}

fn matmul(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let a = c.f32_input(0)?;
    let b = c.f32_input(1)?;
    let (shape, _, _) = matmul_shape(c, a, b)?;
    Ok(node(Op::MatMul, vec![0, 1], DType::F32, shape))
}

/// numpy matmul's output shape of `a @ b`, with the row count `m` and column count `n`.
fn matmul_shape(
    c: &NodeCtx<'_>,
    a: &Value,
    b: &Value,
) -> Result<(Vec<usize>, usize, usize), ExecError> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err(c.mismatch(format!("{} operands must have rank >= 1", c.op_type)));
    }
    let mut sa = a.shape.clone();
    let mut sb = b.shape.clone();
    let a1 = sa.len() == 1;
    let b1 = sb.len() == 1;
    if a1 {
        sa.insert(0, 1);
    }
    if b1 {
        sb.push(1);
    }
    let (m, ka) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if ka != kb {
        return Err(c.mismatch(format!(
            "inner dimensions differ: {:?} x {:?}",
            a.shape, b.shape
        )));
    }
    let batch = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).ok_or_else(|| {
        c.mismatch(format!(
            "batch dims of {:?} and {:?} do not broadcast",
            a.shape, b.shape
        ))
    })?;
    let mut shape = batch;
    if !a1 {
        shape.push(m);
    }
    if !b1 {
        shape.push(n);
    }
    Ok((shape, m, n))
}

fn reshape(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.input(0)?;
    let target = c
        .const_ints(1)?
        .ok_or_else(|| c.invalid("shape input is required"))?;
    let allowzero = c.opset >= 14 && c.attr_bool_or("allowzero", false)?;
    let total = checked_numel(&x.shape).ok_or_else(|| c.overflow("reshape"))?;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(c.invalid(format!("more than one -1 in shape {target:?}")));
                }
                shape.push(1);
            }
            0 if !allowzero => {
                let Some(&v) = x.shape.get(i) else {
                    return Err(c.invalid(format!(
                        "shape {target:?} copies dim {i} of rank-{} input",
                        x.rank()
                    )));
                };
                shape.push(v);
            }
            d if d >= 0 => shape.push(d as usize),
            _ => return Err(c.invalid(format!("invalid dimension {d} in shape {target:?}"))),
        }
    }
    let known = checked_numel(&shape).ok_or_else(|| c.overflow("reshape"))?;
    if let Some(i) = infer_at {
        if known == 0 || total % known != 0 {
            return Err(c.mismatch(format!("cannot reshape {:?} to {target:?}", x.shape)));
        }
        shape[i] = total / known;
    } else if known != total {
        return Err(c.mismatch(format!("cannot reshape {:?} to {target:?}", x.shape)));
    }
    Ok(node(
        Op::Reshape {
            shape: shape.clone(),
        },
        vec![0],
        x.dtype,
        shape,
    ))
}

/// Axes from the attribute (before `attr_until`) or from input 1.
fn axes_arg(c: &NodeCtx<'_>, input_from: i64) -> Result<Option<Vec<i64>>, ExecError> {
    if c.opset < input_from {
        c.attr_ints("axes")
    } else {
        c.const_ints(1)
    }
}

fn squeeze(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, if c.opset >= 13 { 2 } else { 1 })?;
    let x = c.input(0)?;
    let axes = match axes_arg(c, 13)? {
        Some(a) => c.axes(&a, x.rank())?,
        None => (0..x.rank()).filter(|&i| x.shape[i] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| x.shape[a] != 1) {
        return Err(c.mismatch(format!("cannot squeeze axis {a} of extent {}", x.shape[a])));
    }
    let shape = (0..x.rank())
        .filter(|i| !axes.contains(i))
        .map(|i| x.shape[i])
        .collect();
    Ok(node(Op::Squeeze { axes }, vec![0], x.dtype, shape))
}

fn unsqueeze(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, if c.opset >= 13 { 2 } else { 1 })?;
    let x = c.input(0)?;
    let axes = axes_arg(c, 13)?.ok_or_else(|| c.invalid("axes are required"))?;
    let out_rank = x.rank() + axes.len();
    let axes = c.axes(&axes, out_rank)?;
    let mut shape = Vec::with_capacity(out_rank);
    let mut src = x.shape.iter();
    for i in 0..out_rank {
        if axes.contains(&i) {
            shape.push(1);
        } else if let Some(&d) = src.next() {
            shape.push(d);
        }
    }
    Ok(node(Op::Unsqueeze { axes }, vec![0], x.dtype, shape))
}

fn concat(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    if c.num_inputs() == 0 {
        return Err(c.invalid("needs at least one input"));
    }
    let first = c.input(0)?;
    let axis = c
        .attr_int("axis")?
        .ok_or_else(|| c.invalid("attribute 'axis' is required"))?;
    let axis = c.axis(axis, first.rank())?;
    let mut shape = first.shape.clone();
    for i in 1..c.num_inputs() {
        let v = c.input(i)?;
        same_dtype(c, first, v)?;
        let fits = v.rank() == first.rank()
            && (0..v.rank()).all(|d| d == axis || v.shape[d] == first.shape[d]);
        if !fits {
            return Err(c.mismatch(format!(
                "input {i} {:?} does not fit {:?} along axis {axis}",
                v.shape, first.shape
            )));
        }
        shape[axis] = shape[axis]
            .checked_add(v.shape[axis])
            .ok_or_else(|| c.overflow("concat"))?;
    }
    Ok(node(
        Op::Concat { axis },
        (0..c.num_inputs()).collect(),
        first.dtype,
        shape,
    ))
}

fn split(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, if c.opset >= 13 { 2 } else { 1 })?;
    let x = c.input(0)?;
    let axis = c.axis(c.attr_int_or("axis", 0)?, x.rank())?;
    let extent = x.shape[axis];
    let given = if c.opset < 13 {
        c.attr_ints("split")?
    } else {
        c.const_ints(1)?
    };
    let splits = match given {
        Some(s) => c.non_negative("split", &s)?,
        None => {
            let n = if c.opset >= 18 {
                match c.attr_int("num_outputs")? {
                    Some(n) => c.positive("num_outputs", &[n])?[0],
                    None => c.num_outputs,
                }
            } else {
                c.num_outputs
            };
            if n == 0 {
                return Err(c.invalid("no outputs"));
            }
            if c.opset >= 18 && c.has_attr("num_outputs") {
                // Opset 18: chunks of ceil(extent / n), the last one smaller.
                let chunk = extent.div_ceil(n);
                let mut v = Vec::with_capacity(n);
                let mut left = extent;
                for _ in 0..n {
                    let k = chunk.min(left);
                    v.push(k);
                    left -= k;
                }
                v
            } else {
                if extent % n != 0 {
                    return Err(c.mismatch(format!(
                        "axis extent {extent} does not split into {n} equal parts"
                    )));
                }
                vec![extent / n; n]
            }
        }
    };
    if splits.iter().try_fold(0usize, |a, &b| a.checked_add(b)) != Some(extent) {
        return Err(c.mismatch(format!(
            "split {splits:?} does not sum to axis extent {extent}"
        )));
    }
    if splits.len() != c.num_outputs {
        return Err(c.invalid(format!(
            "{} split sizes for {} outputs",
            splits.len(),
            c.num_outputs
        )));
    }
    let outputs = splits
        .iter()
        .map(|&s| {
            let mut sh = x.shape.clone();
            sh[axis] = s;
            (x.dtype, sh)
        })
        .collect();
    Ok(Inferred::Node {
        op: Op::Split { axis, splits },
        inputs: vec![0],
        outputs,
    })
}

fn slice(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let x = c.input(0)?;
    let (starts, ends, axes, steps) = if c.opset < 10 {
        c.arity(1, 1)?;
        let starts = c
            .attr_ints("starts")?
            .ok_or_else(|| c.invalid("attribute 'starts' is required"))?;
        let ends = c
            .attr_ints("ends")?
            .ok_or_else(|| c.invalid("attribute 'ends' is required"))?;
        (starts, ends, c.attr_ints("axes")?, None)
    } else {
        c.arity(3, 5)?;
        let starts = c
            .const_ints(1)?
            .ok_or_else(|| c.invalid("starts input is required"))?;
        let ends = c
            .const_ints(2)?
            .ok_or_else(|| c.invalid("ends input is required"))?;
        (starts, ends, c.const_ints(3)?, c.const_ints(4)?)
    };
    let n = starts.len();
    let axes_raw = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes_raw.len() != n || steps.len() != n {
        return Err(c.invalid("starts, ends, axes and steps differ in length"));
    }
    let r = x.rank();
    let mut seen = vec![false; r];
    let mut out_starts = vec![0usize; r];
    let mut out_steps = vec![1i64; r];
    let mut shape = x.shape.clone();
    for k in 0..n {
        let a = c.axis(axes_raw[k], r)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(c.invalid(format!("repeated axis in {axes_raw:?}")));
        }
        let step = steps[k];
        if step == 0 {
            return Err(c.invalid("step 0"));
        }
        let d = x.shape[a] as i128;
        let norm = |v: i64| {
            let v = v as i128;
            if v < 0 {
                v + d
            } else {
                v
            }
        };
        let (s, e) = (norm(starts[k]), norm(ends[k]));
        let (first, count) = if step > 0 {
            let s = s.clamp(0, d);
            let e = e.clamp(0, d);
            let cnt = if e > s {
                (e - s + step as i128 - 1) / step as i128
            } else {
                0
            };
            (s, cnt)
        } else {
            let s = s.clamp(-1, d - 1);
            let e = e.clamp(-1, d - 1);
            let st = -(step as i128);
            let cnt = if s > e { (s - e + st - 1) / st } else { 0 };
            (s.max(0), cnt)
        };
        out_starts[a] = if count == 0 { 0 } else { first as usize };
        out_steps[a] = step;
        shape[a] = count as usize;
    }
    Ok(node(
        Op::Slice {
            starts: out_starts,
            steps: out_steps,
        },
        vec![0],
        x.dtype,
        shape,
    ))
}

fn gather(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let data = c.input(0)?;
    let idx = c.typed_input(1, &[DType::I32, DType::I64])?;
    let axis = c.axis(c.attr_int_or("axis", 0)?, data.rank())?;
    let extent = data.shape[axis] as i64;
    if let Some(v) = c.const_ints(1).ok().flatten() {
        if let Some(bad) = v.iter().find(|&&i| i < -extent || i >= extent) {
            return Err(c.mismatch(format!(
                "index {bad} out of range for axis {axis} of extent {extent}"
            )));
        }
    }
    let mut shape = data.shape[..axis].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&data.shape[axis + 1..]);
    Ok(node(Op::Gather { axis }, vec![0, 1], data.dtype, shape))
}

fn pad(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let x = c.input(0)?;
    let r = x.rank();
    let mode = match c.attr_string_or("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" if c.opset >= 19 => PadMode::Wrap,
        other => return Err(c.invalid(format!("unsupported mode '{other}'"))),
    };
    let (raw_pads, value, axes) = if c.opset < 11 {
        c.arity(1, 1)?;
        let p = c
            .attr_ints("pads")?
            .ok_or_else(|| c.invalid("attribute 'pads' is required"))?;
        (p, c.attr_float_or("value", 0.0)?, None)
    } else {
        c.arity(2, if c.opset >= 18 { 4 } else { 3 })?;
        let p = c
            .const_ints(1)?
            .ok_or_else(|| c.invalid("pads input is required"))?;
        let value = match c.opt_input(2) {
            None => 0.0,
            Some(v) => match v.konst.as_deref() {
                Some(TensorData::F32(d)) if d.len() == 1 => d[0],
                Some(TensorData::I64(d)) if d.len() == 1 => d[0] as f32,
                Some(TensorData::I32(d)) if d.len() == 1 => d[0] as f32,
                None => {
                    return Err(
                        c.invalid("input 2 (constant_value) must be a constant known at load")
                    )
                }
                _ => return Err(c.invalid("constant_value must be a scalar")),
            },
        };
        (p, value, c.const_ints(3)?)
    };
    let axes = match axes {
        Some(a) => {
            let mut out = Vec::with_capacity(a.len());
            for &ax in &a {
                out.push(c.axis(ax, r)?);
            }
            out
        }
        None => (0..r).collect(),
    };
    let k = axes.len();
    if raw_pads.len() != 2 * k {
        return Err(c.invalid(format!(
            "{} pads for {k} axes (need begins and ends)",
            raw_pads.len()
        )));
    }
    let mut pads = vec![0i64; 2 * r];
    for (j, &a) in axes.iter().enumerate() {
        pads[a] = raw_pads[j];
        pads[a + r] = raw_pads[j + k];
    }
    let mut shape = Vec::with_capacity(r);
    for a in 0..r {
        let d = x.shape[a] as i128 + pads[a] as i128 + pads[a + r] as i128;
        if d < 0 {
            return Err(c.mismatch(format!("pads {pads:?} crop axis {a} below zero")));
        }
        let d = usize::try_from(d).map_err(|_| c.overflow("padded extent"))?;
        shape.push(d);
    }
    if x.dtype != DType::F32 && mode == PadMode::Constant && value != 0.0 {
        return Err(c.invalid("non-zero pad value on a non-float tensor"));
    }
    Ok(node(Op::Pad { mode, pads, value }, vec![0], x.dtype, shape))
}

fn resize(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let x = c.f32_input(0)?;
    let r = x.rank();
    let mode = match c.attr_string_or("mode", "nearest")?.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        "cubic" if c.opset >= 11 => ResizeMode::Cubic,
        other => return Err(c.invalid(format!("unsupported mode '{other}'"))),
    };
    let mut antialias = false;
    let mut roi: Option<Vec<f32>> = None;
    let (scales, sizes, coordinate_transform, nearest_mode, axes) = if c.opset < 11 {
        c.arity(2, 2)?;
        let s = c
            .const_floats(1)?
            .ok_or_else(|| c.invalid("scales input is required"))?;
        // Opset 10 Resize behaves like Upsample: asymmetric mapping, floor rounding.
        (
            Some(s),
            None,
            CoordinateTransform::Asymmetric,
            NearestMode::Floor,
            None,
        )
    } else {
        c.arity(1, 4)?;
        let ct = match c
            .attr_string_or("coordinate_transformation_mode", "half_pixel")?
            .as_str()
        {
            "half_pixel" => CoordinateTransform::HalfPixel,
            "pytorch_half_pixel" => CoordinateTransform::PytorchHalfPixel,
            "align_corners" => CoordinateTransform::AlignCorners,
            "asymmetric" => CoordinateTransform::Asymmetric,
            "tf_half_pixel_for_nn" => CoordinateTransform::TfHalfPixelForNn,
            "half_pixel_symmetric" if c.opset >= 19 => CoordinateTransform::HalfPixelSymmetric,
            "tf_crop_and_resize" if mode != ResizeMode::Nearest => {
                roi = c.const_floats(1)?.filter(|r| !r.is_empty());
                if roi.is_none() {
                    return Err(c.invalid("tf_crop_and_resize needs a constant roi input"));
                }
                CoordinateTransform::TfCropAndResize
            }
            other => {
                return Err(c.invalid(format!(
                    "unsupported coordinate_transformation_mode '{other}'"
                )))
            }
        };
        let nm = match c
            .attr_string_or("nearest_mode", "round_prefer_floor")?
            .as_str()
        {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => return Err(c.invalid(format!("unsupported nearest_mode '{other}'"))),
        };
        if c.opset >= 18 && c.attr_bool_or("antialias", false)? {
            if mode == ResizeMode::Nearest {
                return Err(c.invalid("antialias=1 applies to linear and cubic modes only"));
            }
            antialias = true;
        }
        // An empty scales/sizes tensor means "not given" (opset 11/12 exporters).
        let scales = c.const_floats(2)?.filter(|s| !s.is_empty());
        let sizes = c.const_ints(3)?.filter(|s| !s.is_empty());
        (scales, sizes, ct, nm, c.attr_ints("axes")?)
    };
    let axes = match axes {
        Some(a) => {
            let mut v = Vec::with_capacity(a.len());
            for &ax in &a {
                v.push(c.axis(ax, r)?);
            }
            v
        }
        None => (0..r).collect(),
    };
    // Opset 18+: with sizes, "not_larger"/"not_smaller" keep the aspect ratio with one scale.
    let keep_aspect: Option<bool> = if c.opset >= 18 {
        match c
            .attr_string_or("keep_aspect_ratio_policy", "stretch")?
            .as_str()
        {
            "stretch" => None,
            "not_larger" => Some(true),
            "not_smaller" => Some(false),
            other => {
                return Err(c.invalid(format!("unsupported keep_aspect_ratio_policy '{other}'")))
            }
        }
    } else {
        None
    };
    let mut out_scales = vec![1.0f32; r];
    let mut shape = x.shape.clone();
    match (scales, sizes) {
        (Some(s), None) => {
            if s.len() != axes.len() {
                return Err(c.invalid(format!("{} scales for {} axes", s.len(), axes.len())));
            }
            for (j, &a) in axes.iter().enumerate() {
                let sc = s[j];
                if !sc.is_finite() || sc <= 0.0 {
                    return Err(c.invalid(format!("invalid scale {sc}")));
                }
                let o = (x.shape[a] as f64 * sc as f64).floor();
                if o > (u32::MAX as f64) {
                    return Err(c.overflow("resize output extent"));
                }
                shape[a] = o as usize;
                out_scales[a] = sc;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != axes.len() {
                return Err(c.invalid(format!("{} sizes for {} axes", sz.len(), axes.len())));
            }
            let sz = c.non_negative("sizes", &sz)?;
            if let Some(not_larger) = keep_aspect {
                if axes.iter().any(|&a| x.shape[a] == 0) {
                    return Err(c.invalid("keep_aspect_ratio_policy on an empty axis"));
                }
                let ratios = axes
                    .iter()
                    .zip(&sz)
                    .map(|(&a, &s)| s as f64 / x.shape[a] as f64);
                let scale = if not_larger {
                    ratios.fold(f64::INFINITY, f64::min)
                } else {
                    ratios.fold(0.0, f64::max)
                };
                for &a in &axes {
                    // ONNX rounds half up here.
                    let o = (scale * x.shape[a] as f64 + 0.5).floor();
                    if o > (u32::MAX as f64) {
                        return Err(c.overflow("resize output extent"));
                    }
                    shape[a] = o as usize;
                    out_scales[a] = scale as f32;
                }
            } else {
                for (j, &a) in axes.iter().enumerate() {
                    shape[a] = sz[j];
                    out_scales[a] = if x.shape[a] == 0 {
                        1.0
                    } else {
                        sz[j] as f32 / x.shape[a] as f32
                    };
                }
            }
        }
        (Some(_), Some(_)) => return Err(c.invalid("both scales and sizes are given")),
        (None, None) => return Err(c.invalid("one of scales or sizes is required")),
    }
    let exclude_outside = c.attr_bool_or("exclude_outside", false)?;
    // The region of interest over every axis: [starts..., ends...], identity on axes the
    // model did not name.
    let roi = match roi {
        None => Vec::new(),
        Some(given) => {
            if given.len() != 2 * axes.len() {
                return Err(c.invalid(format!(
                    "roi has {} values for {} axes",
                    given.len(),
                    axes.len()
                )));
            }
            let mut full: Vec<f32> = vec![0.0; r];
            full.extend(std::iter::repeat_n(1.0f32, r));
            for (j, &a) in axes.iter().enumerate() {
                full[a] = given[j];
                full[r + a] = given[axes.len() + j];
            }
            full
        }
    };
    Ok(node(
        Op::Resize {
            mode,
            coordinate_transform,
            nearest_mode,
            scales: out_scales,
            exclude_outside,
            cubic_coeff_a: c.attr_float_or("cubic_coeff_a", -0.75)?,
            antialias,
            roi,
            extrapolation_value: c.attr_float_or("extrapolation_value", 0.0)?,
        },
        vec![0],
        DType::F32,
        shape,
    ))
}

fn reduce(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let kind = match c.op_type {
        "ReduceMean" => ReduceKind::Mean,
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        "ReduceProd" => ReduceKind::Prod,
        "ReduceL1" => ReduceKind::L1,
        "ReduceL2" => ReduceKind::L2,
        "ReduceSumSquare" => ReduceKind::SumSquare,
        "ReduceLogSum" => ReduceKind::LogSum,
        _ => ReduceKind::LogSumExp,
    };
    // Axes moved from an attribute to an input in opset 13 for ReduceSum, 18 for the rest.
    let input_from = if kind == ReduceKind::Sum { 13 } else { 18 };
    c.arity(1, if c.opset >= input_from { 2 } else { 1 })?;
    let x = match kind {
        ReduceKind::Max | ReduceKind::Min => c.typed_input(0, VALUES)?,
        ReduceKind::Sum | ReduceKind::Prod => c.typed_input(0, &NUMBERS)?,
        _ => c.typed_input(0, &[DType::F32, DType::F64])?,
    };
    let keepdims = c.attr_bool_or("keepdims", true)?;
    let axes = match axes_arg(c, input_from)? {
        Some(a) if !a.is_empty() => c.axes(&a, x.rank())?,
        _ => {
            if c.opset >= input_from && c.attr_bool_or("noop_with_empty_axes", false)? {
                Vec::new()
            } else {
                (0..x.rank()).collect()
            }
        }
    };
    let mut shape = Vec::with_capacity(x.rank());
    for (i, &d) in x.shape.iter().enumerate() {
        if axes.contains(&i) {
            if keepdims {
                shape.push(1);
            }
        } else {
            shape.push(d);
        }
    }
    Ok(node(
        Op::Reduce {
            kind,
            axes,
            keepdims,
        },
        vec![0],
        x.dtype,
        shape,
    ))
}

fn arg_reduce(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.typed_input(0, &NUMBERS)?;
    let axis = c.axis(c.attr_int_or("axis", 0)?, x.rank())?;
    if x.shape[axis] == 0 {
        return Err(c.mismatch(format!("axis {axis} is empty")));
    }
    let keepdims = c.attr_bool_or("keepdims", true)?;
    let select_last_index = c.opset >= 12 && c.attr_bool_or("select_last_index", false)?;
    let mut shape = x.shape.clone();
    if keepdims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    let op = Op::ArgReduce {
        max: c.op_type == "ArgMax",
        axis,
        keepdims,
        select_last_index,
    };
    Ok(node(op, vec![0], DType::I64, shape))
}

/// Max, Min, Mean: one or more inputs of one type, broadcasting together.
fn variadic(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    if c.num_inputs() == 0 {
        return Err(c.invalid("needs at least one input"));
    }
    let types: &[DType] = if c.op_type == "Mean" {
        &[DType::F32, DType::F64]
    } else {
        &NUMERIC
    };
    let first = c.typed_input(0, types)?;
    let mut shape = first.shape.clone();
    for i in 1..c.num_inputs() {
        let v = c.input(i)?;
        same_dtype(c, first, v)?;
        shape = broadcast(&shape, &v.shape).ok_or_else(|| {
            c.mismatch(format!(
                "shapes {shape:?} and {:?} do not broadcast",
                v.shape
            ))
        })?;
    }
    let op = match c.op_type {
        "Max" => Op::Max,
        "Min" => Op::Min,
        _ => Op::Mean,
    };
    Ok(node(op, (0..c.num_inputs()).collect(), first.dtype, shape))
}

fn compare(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let numeric = NUMERIC;
    let a = c.typed_input(0, &numeric)?;
    let b = c.typed_input(1, &numeric)?;
    same_dtype(c, a, b)?;
    let shape = bcast(c, a, b)?;
    let cmp = match c.op_type {
        "Less" => CompareKind::Less,
        "LessOrEqual" => CompareKind::LessOrEqual,
        "Greater" => CompareKind::Greater,
        _ => CompareKind::GreaterOrEqual,
    };
    Ok(node(Op::Compare { cmp }, vec![0, 1], DType::Bool, shape))
}

/// Integer types the bitwise operators run on (BitShift: the unsigned ones, `u8`).
const BITWISE: [DType; 8] = [
    DType::U8,
    DType::I8,
    DType::I32,
    DType::I64,
    DType::I16,
    DType::U16,
    DType::U32,
    DType::U64,
];

fn bitwise(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    // BitShift takes signed integers from opset 28 (arithmetic right shifts).
    let types: &[DType] = if c.op_type == "BitShift" && c.opset < 28 {
        &[DType::U8, DType::U16, DType::U32, DType::U64]
    } else {
        &BITWISE
    };
    let a = c.typed_input(0, types)?;
    let b = c.typed_input(1, types)?;
    same_dtype(c, a, b)?;
    let shape = bcast(c, a, b)?;
    let op = match c.op_type {
        "BitwiseAnd" => BitwiseKind::And,
        "BitwiseOr" => BitwiseKind::Or,
        "BitwiseXor" => BitwiseKind::Xor,
        _ => match c.attr_string("direction")?.as_deref() {
            Some("LEFT") => BitwiseKind::ShiftLeft,
            Some("RIGHT") => BitwiseKind::ShiftRight,
            other => {
                return Err(c.invalid(format!(
                    "direction {other:?}: \"LEFT\" or \"RIGHT\" is required"
                )))
            }
        },
    };
    Ok(node(Op::Bitwise { op }, vec![0, 1], a.dtype, shape))
}

fn logic(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let a = c.typed_input(0, &[DType::Bool])?;
    let b = c.typed_input(1, &[DType::Bool])?;
    let shape = bcast(c, a, b)?;
    let op = match c.op_type {
        "And" => LogicKind::And,
        "Or" => LogicKind::Or,
        _ => LogicKind::Xor,
    };
    Ok(node(Op::Logic { op }, vec![0, 1], DType::Bool, shape))
}

fn prelu(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.f32_input(0)?;
    let slope = c.f32_input(1)?;
    // The slope broadcasts to x unidirectionally (numpy rules, x's shape unchanged).
    if broadcast(&slope.shape, &x.shape).as_deref() == Some(&x.shape[..]) {
        return Ok(node(Op::PRelu, vec![0, 1], DType::F32, x.shape.clone()));
    }
    Err(c.mismatch(format!(
        "slope {:?} does not broadcast to x {:?}",
        slope.shape, x.shape
    )))
}

fn math(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let f = MathFn::ALL
        .iter()
        .copied()
        .find(|f| f.onnx_name() == c.op_type)
        .ok_or_else(|| c.invalid("unknown function"))?;
    let x = if f.takes_ints() {
        c.typed_input(0, &[DType::F32, DType::I32, DType::I64, DType::F64])?
    } else {
        c.typed_input(0, &[DType::F32, DType::F64])?
    };
    let out = if f.to_bool() { DType::Bool } else { x.dtype };
    Ok(node(Op::Math { f }, vec![0], out, x.shape.clone()))
}

fn tile(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.input(0)?;
    let repeats = c
        .const_ints(1)?
        .ok_or_else(|| c.invalid("repeats must be a constant"))?;
    if repeats.len() != x.rank() {
        return Err(c.mismatch(format!(
            "{} repeats for an input of rank {}",
            repeats.len(),
            x.rank()
        )));
    }
    let repeats = c.non_negative("repeats", &repeats)?;
    let shape = x
        .shape
        .iter()
        .zip(&repeats)
        .map(|(&d, &r)| d.checked_mul(r))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| c.overflow("tiled shape"))?;
    checked_numel(&shape).ok_or_else(|| c.overflow("tiled shape"))?;
    Ok(node(Op::Tile { repeats }, vec![0], x.dtype, shape))
}

fn block_shuffle(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 1)?;
    let x = c.input(0)?;
    if x.rank() != 4 {
        return Err(c.mismatch(format!("input rank {} is not 4", x.rank())));
    }
    let b = c
        .attr_int("blocksize")?
        .ok_or_else(|| c.invalid("attribute 'blocksize' is required"))?;
    let b = c.positive("blocksize", &[b])?[0];
    let [n, ch, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let to_space = c.op_type == "DepthToSpace";
    // SpaceToDepth has a `mode` from opset 28; earlier models never set it (DCR).
    let crd = match c.attr_string_or("mode", "DCR")?.as_str() {
        "DCR" => false,
        "CRD" => true,
        other => return Err(c.invalid(format!("unknown mode '{other}'"))),
    };
    let bb = b.checked_mul(b).ok_or_else(|| c.overflow("blocksize"))?;
    let shape = if to_space {
        if ch % bb != 0 {
            return Err(c.mismatch(format!("channels {ch} not divisible by blocksize² {bb}")));
        }
        vec![n, ch / bb, h * b, w * b]
    } else {
        if h % b != 0 || w % b != 0 {
            return Err(c.mismatch(format!("spatial {h}x{w} not divisible by blocksize {b}")));
        }
        vec![n, ch * bb, h / b, w / b]
    };
    let op = Op::BlockShuffle {
        to_space,
        blocksize: b,
        crd,
    };
    Ok(node(op, vec![0], x.dtype, shape))
}

fn index_input<'a>(c: &NodeCtx<'a>, i: usize) -> Result<&'a Value, ExecError> {
    c.typed_input(i, &[DType::I64, DType::I32])
}

fn gather_elements(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let data = c.input(0)?;
    let idx = index_input(c, 1)?;
    let axis = c.axis(c.attr_int_or("axis", 0)?, data.rank())?;
    same_rank_within(c, &data.shape, &idx.shape, axis)?;
    Ok(node(
        Op::GatherElements { axis },
        vec![0, 1],
        data.dtype,
        idx.shape.clone(),
    ))
}

/// `indices` has `data`'s rank and no larger extent off `axis` (GatherElements,
/// ScatterElements).
fn same_rank_within(
    c: &NodeCtx<'_>,
    data: &[usize],
    idx: &[usize],
    axis: usize,
) -> Result<(), ExecError> {
    let ok = data.len() == idx.len()
        && data
            .iter()
            .zip(idx)
            .enumerate()
            .all(|(a, (&d, &i))| a == axis || i <= d);
    if ok {
        Ok(())
    } else {
        Err(c.mismatch(format!("indices {idx:?} do not fit data {data:?}")))
    }
}

fn scatter_reduction(c: &NodeCtx<'_>) -> Result<ScatterReduce, ExecError> {
    Ok(match c.attr_string_or("reduction", "none")?.as_str() {
        "none" => ScatterReduce::None,
        "add" => ScatterReduce::Add,
        "mul" => ScatterReduce::Mul,
        "max" => ScatterReduce::Max,
        "min" => ScatterReduce::Min,
        other => return Err(c.invalid(format!("unknown reduction '{other}'"))),
    })
}

fn scatter_elements(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let data = c.typed_input(0, VALUES)?;
    let idx = index_input(c, 1)?;
    let upd = c.input(2)?;
    same_dtype(c, data, upd)?;
    if upd.shape != idx.shape {
        return Err(c.mismatch(format!(
            "updates {:?} differ from indices {:?}",
            upd.shape, idx.shape
        )));
    }
    let axis = c.axis(c.attr_int_or("axis", 0)?, data.rank())?;
    same_rank_within(c, &data.shape, &idx.shape, axis)?;
    let reduction = scatter_reduction(c)?;
    if matches!(data.dtype, DType::Bool | DType::Narrow(_)) && reduction != ScatterReduce::None {
        return Err(c.invalid(format!("a reduction on {} data", data.dtype)));
    }
    Ok(node(
        Op::ScatterElements { axis, reduction },
        vec![0, 1, 2],
        data.dtype,
        data.shape.clone(),
    ))
}

fn scatter_nd(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let data = c.typed_input(0, VALUES)?;
    let idx = c.typed_input(1, &[DType::I64])?;
    let upd = c.input(2)?;
    same_dtype(c, data, upd)?;
    let q = idx.rank();
    let k = match idx.shape.last() {
        Some(&k) if k >= 1 && k <= data.rank() => k,
        _ => return Err(c.mismatch(format!("indices {:?} for data {:?}", idx.shape, data.shape))),
    };
    let want: Vec<usize> = idx.shape[..q - 1]
        .iter()
        .chain(&data.shape[k..])
        .copied()
        .collect();
    if upd.shape != want {
        return Err(c.mismatch(format!("updates {:?}, expected {want:?}", upd.shape)));
    }
    let reduction = scatter_reduction(c)?;
    if matches!(data.dtype, DType::Bool | DType::Narrow(_)) && reduction != ScatterReduce::None {
        return Err(c.invalid(format!("a reduction on {} data", data.dtype)));
    }
    Ok(node(
        Op::ScatterND { reduction },
        vec![0, 1, 2],
        data.dtype,
        data.shape.clone(),
    ))
}

fn one_hot(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    // Any numeric type; float indices and depth are truncated to integers (the specification).
    let idx = c.typed_input(0, &[DType::I64, DType::I32, DType::F32])?;
    let depth = if c.input(1)?.dtype == DType::F32 {
        match c.const_floats(1)? {
            Some(d) if d.len() == 1 && d[0].is_finite() => d[0] as i64,
            _ => return Err(c.invalid("depth must be a finite one-element constant")),
        }
    } else {
        match c.const_ints(1)? {
            Some(d) if d.len() == 1 => d[0],
            _ => return Err(c.invalid("depth must be a one-element constant")),
        }
    };
    let depth = c.positive("depth", &[depth])?[0];
    let values = c.input(2)?;
    if values.shape.iter().product::<usize>() != 2 {
        return Err(c.mismatch(format!("values {:?} must hold 2 elements", values.shape)));
    }
    let r = idx.rank() as i64;
    let axis = c.attr_int_or("axis", -1)?;
    let axis = if axis < 0 { axis + r + 1 } else { axis };
    if !(0..=r).contains(&axis) {
        return Err(c.invalid(format!("axis out of range for output rank {}", r + 1)));
    }
    let axis = axis as usize;
    let mut shape = idx.shape.clone();
    shape.insert(axis, depth);
    checked_numel(&shape).ok_or_else(|| c.overflow("one-hot shape"))?;
    Ok(node(
        Op::OneHot { depth, axis },
        vec![0, 2],
        values.dtype,
        shape,
    ))
}

fn top_k(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let x = c.typed_input(0, &NUMBERS)?;
    let k = if c.opset >= 10 {
        c.arity(2, 2)?;
        match c.const_ints(1)? {
            Some(k) if k.len() == 1 => k[0],
            _ => return Err(c.invalid("K must be a one-element constant (shapes are static)")),
        }
    } else {
        c.arity(1, 1)?;
        c.attr_int("k")?
            .ok_or_else(|| c.invalid("attribute 'k' is required"))?
    };
    let k = c.non_negative("K", &[k])?[0];
    let axis = c.axis(c.attr_int_or("axis", -1)?, x.rank())?;
    if k > x.shape[axis] {
        return Err(c.mismatch(format!("K {k} exceeds axis extent {}", x.shape[axis])));
    }
    let largest = c.opset < 11 || c.attr_bool_or("largest", true)?;
    let mut shape = x.shape.clone();
    shape[axis] = k;
    Ok(Inferred::Node {
        op: Op::TopK { k, axis, largest },
        inputs: vec![0],
        outputs: vec![(x.dtype, shape.clone()), (DType::I64, shape)],
    })
}

fn cumsum(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.typed_input(0, &NUMBERS)?;
    let axis = match c.const_ints(1)? {
        Some(a) if a.len() == 1 => a[0],
        _ => return Err(c.invalid("axis must be a one-element constant")),
    };
    let axis = c.axis(axis, x.rank())?;
    let op = Op::CumSum {
        axis,
        exclusive: c.attr_bool_or("exclusive", false)?,
        reverse: c.attr_bool_or("reverse", false)?,
        product: c.op_type == "CumProd",
    };
    Ok(node(op, vec![0], x.dtype, x.shape.clone()))
}

fn trilu(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(1, 2)?;
    let x = c.typed_input(0, VALUES)?;
    if x.rank() < 2 {
        return Err(c.mismatch(format!("input rank {} < 2", x.rank())));
    }
    let k = match c.opt_input(1) {
        Some(_) => match c.const_ints(1)? {
            Some(k) if k.len() == 1 => k[0],
            _ => return Err(c.invalid("k must be a one-element constant")),
        },
        None => 0,
    };
    let op = Op::Trilu {
        k,
        upper: c.attr_bool_or("upper", true)?,
    };
    Ok(node(op, vec![0], x.dtype, x.shape.clone()))
}

fn instance_norm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let x = c.f32_input(0)?;
    if x.rank() < 3 {
        return Err(c.mismatch(format!("input rank {} < 3", x.rank())));
    }
    let ch = x.shape[1];
    for (i, what) in [(1, "scale"), (2, "B")] {
        let v = c.f32_input(i)?;
        if v.shape != [ch] {
            return Err(c.mismatch(format!("{what} {:?} is not [{ch}]", v.shape)));
        }
    }
    let epsilon = c.attr_float_or("epsilon", 1e-5)?;
    Ok(node(
        Op::InstanceNormalization { epsilon },
        vec![0, 1, 2],
        DType::F32,
        x.shape.clone(),
    ))
}

/// Upsample (deprecated in opset 10) is Resize with `asymmetric` coordinates and `floor`
/// rounding for nearest.
fn upsample(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    let x = c.f32_input(0)?;
    let scales = if c.opset >= 9 {
        c.arity(2, 2)?;
        c.const_floats(1)?
            .ok_or_else(|| c.invalid("scales must be a constant"))?
    } else {
        c.arity(1, 1)?;
        c.attr_floats("scales")?
            .ok_or_else(|| c.invalid("attribute 'scales' is required"))?
    };
    if scales.len() != x.rank() || scales.iter().any(|&s| !(s >= 1.0 && s.is_finite())) {
        return Err(c.invalid(format!(
            "scales {scales:?} must be one finite value >= 1 per axis of rank {}",
            x.rank()
        )));
    }
    let mode = match c.attr_string_or("mode", "nearest")?.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        other => return Err(c.invalid(format!("unsupported mode '{other}'"))),
    };
    let shape = x
        .shape
        .iter()
        .zip(&scales)
        .map(|(&d, &s)| (d as f64 * f64::from(s)).floor() as usize)
        .collect::<Vec<_>>();
    checked_numel(&shape).ok_or_else(|| c.overflow("upsampled shape"))?;
    Ok(node(
        Op::Resize {
            mode,
            coordinate_transform: CoordinateTransform::Asymmetric,
            nearest_mode: NearestMode::Floor,
            scales,
            exclude_outside: false,
            cubic_coeff_a: -0.75,
            antialias: false,
            roi: Vec::new(),
            extrapolation_value: 0.0,
        },
        vec![0],
        DType::F32,
        shape,
    ))
}

fn layer_norm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let x = c.f32_input(0)?;
    let axis = c.axis(c.attr_int_or("axis", -1)?, x.rank())?;
    if c.attr_int_or("stash_type", 1)? != 1 {
        return Err(c.invalid("only stash_type=1 (float) is supported"));
    }
    let norm = &x.shape[axis..];
    let mut inputs = vec![0, 1];
    let scale = c.f32_input(1)?;
    if broadcast(&scale.shape, norm).as_deref() != Some(norm) {
        return Err(c.mismatch(format!(
            "scale {:?} does not broadcast to {norm:?}",
            scale.shape
        )));
    }
    if let Some(b) = c.opt_input(2) {
        if b.dtype != DType::F32 || broadcast(&b.shape, norm).as_deref() != Some(norm) {
            return Err(c.mismatch(format!("bias {:?} does not broadcast to {norm:?}", b.shape)));
        }
        inputs.push(2);
    }
    let epsilon = c.attr_float_or("epsilon", 1e-5)?;
    // Optional outputs Mean and InvStdDev: one value per normalised row, reduced axes kept.
    let mut outputs = vec![(DType::F32, x.shape.clone())];
    let stats: Vec<usize> = x.shape[..axis]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(1, x.rank() - axis))
        .collect();
    for _ in 1..c.num_outputs.min(3) {
        outputs.push((DType::F32, stats.clone()));
    }
    Ok(Inferred::Node {
        op: Op::LayerNormalization { axis, epsilon },
        inputs,
        outputs,
    })
}

fn rms_norm(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 2)?;
    let x = c.f32_input(0)?;
    let axis = c.axis(c.attr_int_or("axis", -1)?, x.rank())?;
    if c.attr_int_or("stash_type", 1)? != 1 {
        return Err(c.invalid("only stash_type=1 (float) is supported"));
    }
    let norm = &x.shape[axis..];
    let scale = c.f32_input(1)?;
    if broadcast(&scale.shape, norm).as_deref() != Some(norm) {
        return Err(c.mismatch(format!(
            "scale {:?} does not broadcast to the normalized shape {norm:?}",
            scale.shape
        )));
    }
    let epsilon = c.attr_float_or("epsilon", 1e-5)?;
    Ok(node(
        Op::RmsNormalization { axis, epsilon },
        vec![0, 1],
        DType::F32,
        x.shape.clone(),
    ))
}

fn range(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(3, 3)?;
    let dt = c.input(0)?.dtype;
    for i in 1..3 {
        if c.input(i)?.dtype != dt {
            return Err(c.mismatch("start, limit and delta differ in type"));
        }
    }
    let scalar = |i: usize| -> Result<&TensorData, ExecError> {
        let v = c.input(i)?;
        match v.konst.as_deref() {
            Some(d) if d.len() == 1 => Ok(d),
            Some(_) => Err(c.mismatch(format!("input {i} must be a scalar"))),
            None => {
                Err(c.invalid("Range inputs must be known at load (a data-dependent output shape)"))
            }
        }
    };
    let (s, l, d) = (scalar(0)?, scalar(1)?, scalar(2)?);
    let out = match (s, l, d) {
        (TensorData::F32(s), TensorData::F32(l), TensorData::F32(d)) => {
            let (s, l, d) = (s[0], l[0], d[0]);
            if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
                return Err(c.invalid("invalid start/limit/delta"));
            }
            let n = ((l - s) / d).ceil().max(0.0) as f64;
            let n = range_len(c, n)?;
            TensorData::F32((0..n).map(|i| s + i as f32 * d).collect())
        }
        (TensorData::I64(s), TensorData::I64(l), TensorData::I64(d)) => {
            TensorData::I64(int_range(c, s[0], l[0], d[0])?)
        }
        (TensorData::I32(s), TensorData::I32(l), TensorData::I32(d)) => TensorData::I32(
            int_range(c, s[0].into(), l[0].into(), d[0].into())?
                .into_iter()
                .map(|v| v as i32)
                .collect(),
        ),
        _ => return Err(c.mismatch("unsupported Range type")),
    };
    Ok(Inferred::Const(vec![(vec![out.len()], out)]))
}

fn range_len(c: &NodeCtx<'_>, n: f64) -> Result<usize, ExecError> {
    if n > (crate::loader::tensor::MAX_CONSTANT_BYTES / 8) as f64 {
        return Err(c.overflow("Range length"));
    }
    Ok(n as usize)
}

fn int_range(c: &NodeCtx<'_>, s: i64, l: i64, d: i64) -> Result<Vec<i64>, ExecError> {
    if d == 0 {
        return Err(c.invalid("delta is 0"));
    }
    let span = l as i128 - s as i128;
    let d128 = d as i128;
    let n = if (span > 0 && d > 0) || (span < 0 && d < 0) {
        (span + d128 - d128.signum()) / d128
    } else {
        0
    };
    let n = range_len(c, n as f64)?;
    Ok((0..n as i64)
        .map(|i| s.wrapping_add(i.wrapping_mul(d)))
        .collect())
}

fn constant(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(0, 0)?;
    let mut found = Vec::new();
    if let Some(t) = c.attr_tensor("value")? {
        found.push(c.decode(t)?);
    }
    if c.opset >= 12 {
        if let Some(f) = c.attr_float("value_float")? {
            found.push((vec![], TensorData::F32(vec![f])));
        }
        if let Some(f) = c.attr_floats("value_floats")? {
            found.push((vec![f.len()], TensorData::F32(f)));
        }
        if let Some(i) = c.attr_int("value_int")? {
            found.push((vec![], TensorData::I64(vec![i])));
        }
        if let Some(i) = c.attr_ints("value_ints")? {
            found.push((vec![i.len()], TensorData::I64(i)));
        }
    }
    for unsupported in ["sparse_value", "value_string", "value_strings"] {
        if c.has_attr(unsupported) {
            return Err(c.invalid(format!("attribute '{unsupported}' is not supported")));
        }
    }
    if found.len() != 1 {
        return Err(c.invalid(format!(
            "needs exactly one value attribute, found {}",
            found.len()
        )));
    }
    Ok(Inferred::Const(found))
}

/// The 8-bit integer types of quantized tensors.
const Q8: &[DType] = &[DType::U8, DType::I8];
/// The element types of the value-moving ops (gathers, scatters, Trilu, ...): all but the
/// 8-bit and 16-bit floats-by-storage.
const VALUES: &[DType] = &[
    DType::F32,
    DType::I32,
    DType::I64,
    DType::Bool,
    DType::F64,
    DType::I16,
    DType::U16,
    DType::U32,
    DType::U64,
];
/// Ordered number types with add and multiply (Sum, ReduceSum/Prod, TopK, CumSum, ...).
const NUMBERS: [DType; 8] = [
    DType::F32,
    DType::I32,
    DType::I64,
    DType::F64,
    DType::I16,
    DType::U16,
    DType::U32,
    DType::U64,
];
/// QuantizeLinear's output types (opset 21 added the 16-bit ones) and DequantizeLinear's
/// inputs but i32; the narrow ones ([`QUANT_NARROW`]) come on top.
const Q8_16: &[DType] = &[DType::U8, DType::I8, DType::I16, DType::U16];

/// The narrow types QuantizeLinear produces and DequantizeLinear reads: the 8-bit floats
/// (opset 19), 4-bit integers (21), E2M1 (23) and 2-bit integers (25); not E8M0.
const QUANT_NARROW: &[DType] = &[
    DType::Narrow(Narrow::F8E4M3FN),
    DType::Narrow(Narrow::F8E4M3FNUZ),
    DType::Narrow(Narrow::F8E5M2),
    DType::Narrow(Narrow::F8E5M2FNUZ),
    DType::Narrow(Narrow::I4),
    DType::Narrow(Narrow::U4),
    DType::Narrow(Narrow::F4E2M1),
    DType::Narrow(Narrow::I2),
    DType::Narrow(Narrow::U2),
];

/// A narrow quantized type needs the opset that introduced it to QuantizeLinear /
/// DequantizeLinear.
fn narrow_quant_opset(c: &NodeCtx<'_>, d: DType) -> Result<(), ExecError> {
    let DType::Narrow(n) = d else { return Ok(()) };
    let since = match n {
        Narrow::I4 | Narrow::U4 => 21,
        Narrow::F4E2M1 => 23,
        Narrow::I2 | Narrow::U2 => 25,
        _ => 19,
    };
    if c.opset < since {
        return Err(c.mismatch(format!(
            "{n} quantization needs opset {since}; the model declares {}",
            c.opset
        )));
    }
    Ok(())
}

/// A quantized type: 8/16-bit integer or a quantizable narrow type.
fn quant_type(d: DType) -> bool {
    Q8_16.contains(&d) || QUANT_NARROW.contains(&d)
}

/// The 8-bit float zero point of a QuantizeLinear / DequantizeLinear must be zero (the spec
/// and its reference reject any other); a constant one is checked here.
fn float8_zero_point(c: &NodeCtx<'_>, zp: Option<&Value>) -> Result<(), ExecError> {
    let Some(zp) = zp else { return Ok(()) };
    let DType::Narrow(t) = zp.dtype else {
        return Ok(());
    };
    if let (true, Some(TensorData::Narrow(_, v))) = (t.is_float8(), zp.konst.as_deref()) {
        if v.iter().any(|&b| t.decode(b) != 0.0) {
            return Err(c.invalid(format!("the {t} zero point must be zero")));
        }
    }
    Ok(())
}

/// How the scale (and zero point) of a QuantizeLinear / DequantizeLinear map onto `x`: one
/// value per tensor, one per index of `axis` (opset 13), or one per block of `block_size`
/// indices along `axis` (opset 21).
fn quant_layout(c: &NodeCtx<'_>, x: &Value, scale: &Value) -> Result<QuantLayout, ExecError> {
    let block = if c.opset >= 21 {
        c.attr_int_or("block_size", 0)?
    } else {
        0
    };
    let block = c.non_negative("block_size", &[block])?[0];
    let count = checked_numel(&scale.shape).unwrap_or(0);
    if block == 0 && scale.rank() <= 1 && count == 1 {
        return Ok(QuantLayout::Tensor);
    }
    if c.opset < 13 {
        return Err(c.mismatch(format!(
            "scale {:?} must be a scalar before opset 13",
            scale.shape
        )));
    }
    let axis = c.axis(c.attr_int_or("axis", 1)?, x.rank())?;
    if block == 0 {
        if scale.shape != [x.shape[axis]] {
            return Err(c.mismatch(format!(
                "per-axis scale {:?} does not match axis {axis} of {:?}",
                scale.shape, x.shape
            )));
        }
        return Ok(QuantLayout::Axis(axis));
    }
    let fits = scale.rank() == x.rank()
        && scale
            .shape
            .iter()
            .zip(&x.shape)
            .enumerate()
            .all(|(d, (&s, &n))| {
                if d == axis {
                    s == n.div_ceil(block)
                } else {
                    s == n
                }
            });
    if !fits {
        return Err(c.mismatch(format!(
            "blocked scale {:?} does not fit {:?} with block_size {block} on axis {axis}",
            scale.shape, x.shape
        )));
    }
    Ok(QuantLayout::Blocked { axis, block })
}

/// The optional zero point of QuantizeLinear / DequantizeLinear: shaped as `scale`, of type
/// `dtype` when given.
fn quant_zero_point<'a>(
    c: &NodeCtx<'a>,
    scale: &Value,
    dtypes: &[DType],
) -> Result<Option<&'a Value>, ExecError> {
    let Some(zp) = c.opt_input(2) else {
        return Ok(None);
    };
    if !dtypes.contains(&zp.dtype) {
        return Err(c.mismatch(format!(
            "zero point has type {}, expected one of {dtypes:?}",
            zp.dtype
        )));
    }
    if checked_numel(&zp.shape) != checked_numel(&scale.shape) || zp.rank() > scale.rank().max(1) {
        return Err(c.mismatch(format!(
            "zero point {:?} is not shaped as scale {:?}",
            zp.shape, scale.shape
        )));
    }
    Ok(Some(zp))
}

fn quantize_linear(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let x = c.f32_input(0)?;
    let scale = c.f32_input(1)?;
    let layout = quant_layout(c, x, scale)?;
    let types: Vec<DType> = Q8_16.iter().chain(QUANT_NARROW).copied().collect();
    let zp = quant_zero_point(c, scale, &types)?;
    float8_zero_point(c, zp)?;
    let saturate = c.opset < 19 || c.attr_bool_or("saturate", true)?;
    // `precision` (opset 23) names the type of the division `x / y_scale`. It runs in f32
    // here: a 16-bit precision would round the quotient first, which changes a result only
    // where that rounding crosses a half-step of the integer grid.
    if c.opset >= 23 {
        let p = c.attr_int_or("precision", 0)?;
        if !matches!(p, 0 | 1 | 10 | 16) {
            return Err(c.invalid(format!("precision {p} is not float, float16 or bfloat16")));
        }
    }
    let declared = match c.opset >= 21 {
        true => c.attr_int_or("output_dtype", 0)?,
        false => 0,
    };
    let declared = match declared {
        0 => None,
        code => Some(
            i32::try_from(code)
                .ok()
                .and_then(DType::from_onnx)
                .filter(|&d| quant_type(d))
                .ok_or_else(|| ExecError::UnsupportedDType {
                    model: c.model.to_owned(),
                    tensor: format!("output of {}", c.name),
                    dtype: crate::loader::tensor::onnx_dtype_name(
                        i32::try_from(code).unwrap_or(-1),
                    ),
                })?,
        ),
    };
    let dtype = match (zp, declared) {
        (Some(z), Some(d)) if z.dtype != d => {
            return Err(c.invalid(format!(
                "output_dtype {d} differs from the zero point's type {}",
                z.dtype
            )))
        }
        (Some(z), _) => z.dtype,
        (None, Some(d)) => d,
        (None, None) => DType::U8,
    };
    narrow_quant_opset(c, dtype)?;
    let inputs = if zp.is_some() {
        vec![0, 1, 2]
    } else {
        vec![0, 1]
    };
    Ok(node(
        Op::QuantizeLinear { layout, saturate },
        inputs,
        dtype,
        x.shape.clone(),
    ))
}

fn dequantize_linear(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 3)?;
    let types: Vec<DType> = Q8_16
        .iter()
        .chain(QUANT_NARROW)
        .chain(&[DType::I32])
        .copied()
        .collect();
    let x = c.typed_input(0, &types)?;
    let scale = c.f32_input(1)?;
    let layout = quant_layout(c, x, scale)?;
    let zp = quant_zero_point(c, scale, &[x.dtype])?;
    float8_zero_point(c, zp)?;
    narrow_quant_opset(c, x.dtype)?;
    let inputs = if zp.is_some() {
        vec![0, 1, 2]
    } else {
        vec![0, 1]
    };
    // `output_dtype` (opset 23): the loader rounds the f32 result to a 16-bit float type.
    let declared = match c.opset >= 23 {
        true => c.attr_int_or("output_dtype", 0)?,
        false => 0,
    };
    if declared != 0
        && !i32::try_from(declared)
            .ok()
            .and_then(DType::from_onnx)
            .is_some_and(|d| d == DType::F32 || d.is_16bit_float())
    {
        return Err(c.invalid(format!(
            "output_dtype {declared} is not float, float16 or bfloat16"
        )));
    }
    Ok(node(
        Op::DequantizeLinear { layout },
        inputs,
        DType::F32,
        x.shape.clone(),
    ))
}

/// A quantization parameter at input `i` of one element, or (with `per` = Some(n)) of one
/// element or `n` elements, of one of `dtypes`.
fn quant_param<'a>(
    c: &NodeCtx<'a>,
    i: usize,
    what: &str,
    dtypes: &[DType],
    per: Option<usize>,
) -> Result<&'a Value, ExecError> {
    let v = c.typed_input(i, dtypes)?;
    let n = checked_numel(&v.shape).unwrap_or(0);
    let ok = v.rank() <= 1 && (n == 1 || per == Some(n));
    if !ok {
        return Err(c.mismatch(match per {
            Some(p) => format!("{what} {:?} must have 1 or {p} elements", v.shape),
            None => format!("{what} {:?} must have one element", v.shape),
        }));
    }
    Ok(v)
}

/// Whether the optional zero point at input `i` (MatMulInteger, ConvInteger) is present;
/// when it is, it is checked like [`quant_param`].
fn opt_zero_point(
    c: &NodeCtx<'_>,
    i: usize,
    what: &str,
    dtype: DType,
    per: Option<usize>,
) -> Result<bool, ExecError> {
    if c.opt_input(i).is_none() {
        return Ok(false);
    }
    quant_param(c, i, what, &[dtype], per)?;
    Ok(true)
}

fn matmul_integer(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 4)?;
    let a = c.typed_input(0, Q8)?;
    let b = c.typed_input(1, Q8)?;
    let (shape, m, n) = matmul_shape(c, a, b)?;
    let a_zero_point = opt_zero_point(c, 2, "a_zero_point", a.dtype, Some(m))?;
    let b_zero_point = opt_zero_point(c, 3, "b_zero_point", b.dtype, Some(n))?;
    let mut inputs = vec![0, 1];
    inputs.extend(a_zero_point.then_some(2));
    inputs.extend(b_zero_point.then_some(3));
    let op = Op::MatMulInteger {
        a_zero_point,
        b_zero_point,
    };
    Ok(node(op, inputs, DType::I32, shape))
}

fn qlinear_matmul(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(8, 8)?;
    let a = c.typed_input(0, Q8)?;
    let b = c.typed_input(3, Q8)?;
    let (shape, m, n) = matmul_shape(c, a, b)?;
    quant_param(c, 1, "a_scale", &[DType::F32], Some(m))?;
    quant_param(c, 2, "a_zero_point", &[a.dtype], Some(m))?;
    quant_param(c, 4, "b_scale", &[DType::F32], Some(n))?;
    quant_param(c, 5, "b_zero_point", &[b.dtype], Some(n))?;
    quant_param(c, 6, "y_scale", &[DType::F32], None)?;
    let y_zp = quant_param(c, 7, "y_zero_point", Q8, None)?;
    Ok(node(Op::QLinearMatMul, (0..8).collect(), y_zp.dtype, shape))
}

fn conv_integer(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(2, 4)?;
    let x = c.typed_input(0, Q8)?;
    let w = c.typed_input(1, Q8)?;
    let (attrs, shape) = conv_geometry(c, x, w)?;
    let x_zero_point = opt_zero_point(c, 2, "x_zero_point", x.dtype, None)?;
    let w_zero_point = opt_zero_point(c, 3, "w_zero_point", w.dtype, Some(w.shape[0]))?;
    let mut inputs = vec![0, 1];
    inputs.extend(x_zero_point.then_some(2));
    inputs.extend(w_zero_point.then_some(3));
    let op = Op::ConvInteger {
        attrs,
        x_zero_point,
        w_zero_point,
    };
    Ok(node(op, inputs, DType::I32, shape))
}

fn qlinear_conv(c: &NodeCtx<'_>) -> Result<Inferred, ExecError> {
    c.arity(8, 9)?;
    let x = c.typed_input(0, Q8)?;
    let w = c.typed_input(3, Q8)?;
    let (attrs, shape) = conv_geometry(c, x, w)?;
    let m = w.shape[0];
    quant_param(c, 1, "x_scale", &[DType::F32], None)?;
    quant_param(c, 2, "x_zero_point", &[x.dtype], None)?;
    quant_param(c, 4, "w_scale", &[DType::F32], Some(m))?;
    quant_param(c, 5, "w_zero_point", &[w.dtype], Some(m))?;
    quant_param(c, 6, "y_scale", &[DType::F32], None)?;
    let y_zp = quant_param(c, 7, "y_zero_point", Q8, None)?;
    let mut inputs: Vec<usize> = (0..8).collect();
    if let Some(b) = c.opt_input(8) {
        if b.dtype != DType::I32 || b.shape != [m] {
            return Err(c.mismatch(format!("bias {} {:?} is not i32 [{m}]", b.dtype, b.shape)));
        }
        inputs.push(8);
    }
    Ok(node(Op::QLinearConv { attrs }, inputs, y_zp.dtype, shape))
}
