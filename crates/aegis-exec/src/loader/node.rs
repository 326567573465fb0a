//! Per-node view used while loading: typed attribute access, constant-input access and the
//! errors that name the model and node.

use std::sync::Arc;

use tract_onnx::pb::{AttributeProto, TensorProto};

use crate::error::ExecError;
use crate::graph::{DType, TensorData};
use crate::loader::tensor::{decode_tensor, ExternalBase};

/// A value known at load: its type and static shape, and its data when constant.
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) konst: Option<Arc<TensorData>>,
}

impl Value {
    pub(crate) fn rank(&self) -> usize {
        self.shape.len()
    }
}

/// What loading one node produced.
#[derive(Debug)]
pub(crate) enum Inferred {
    /// A runtime operator reading `inputs` (indices into the node's ONNX inputs) and writing
    /// the first `outputs.len()` ONNX outputs; further declared outputs are unsupported.
    Node {
        op: crate::graph::Op,
        inputs: Vec<usize>,
        outputs: Vec<(DType, Vec<usize>)>,
    },
    /// Output values known at load.
    Const(Vec<(Vec<usize>, TensorData)>),
    /// Output 0 is input 0 (Identity, inference Dropout); further outputs are unsupported.
    Alias,
}

/// Everything the op parsers see of one node.
#[derive(Debug)]
pub(crate) struct NodeCtx<'a> {
    pub(crate) model: &'a str,
    pub(crate) name: &'a str,
    pub(crate) op_type: &'a str,
    pub(crate) opset: i64,
    pub(crate) attrs: &'a [AttributeProto],
    pub(crate) inputs: Vec<Option<&'a Value>>,
    pub(crate) num_outputs: usize,
    pub(crate) base: ExternalBase<'a>,
    /// Bytes of folded constants this load may still create.
    pub(crate) const_budget: u64,
}

// ONNX AttributeProto.AttributeType codes.
const AT_UNDEFINED: i32 = 0;
const AT_FLOAT: i32 = 1;
const AT_INT: i32 = 2;
const AT_STRING: i32 = 3;
const AT_TENSOR: i32 = 4;
const AT_FLOATS: i32 = 6;
const AT_INTS: i32 = 7;
const AT_STRINGS: i32 = 8;

impl<'a> NodeCtx<'a> {
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> ExecError {
        ExecError::InvalidNode {
            model: self.model.to_owned(),
            node: self.name.to_owned(),
            reason: format!("{}: {}", self.op_type, reason.into()),
        }
    }

    pub(crate) fn mismatch(&self, reason: impl Into<String>) -> ExecError {
        ExecError::ShapeMismatch {
            model: self.model.to_owned(),
            node: self.name.to_owned(),
            reason: format!("{}: {}", self.op_type, reason.into()),
        }
    }

    pub(crate) fn overflow(&self, what: impl Into<String>) -> ExecError {
        ExecError::Overflow {
            model: self.model.to_owned(),
            what: format!("node {}: {}", self.name, what.into()),
        }
    }

    /// Number of inputs given (absent optional ones included).
    pub(crate) fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Checks the input count is within `min..=max`.
    pub(crate) fn arity(&self, min: usize, max: usize) -> Result<(), ExecError> {
        let n = self.inputs.len();
        if n < min || n > max {
            return Err(self.invalid(format!("expects {min}..={max} inputs, got {n}")));
        }
        Ok(())
    }

    /// A required input.
    pub(crate) fn input(&self, i: usize) -> Result<&'a Value, ExecError> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| self.invalid(format!("input {i} is required")))
    }

    /// An optional input.
    pub(crate) fn opt_input(&self, i: usize) -> Option<&'a Value> {
        self.inputs.get(i).copied().flatten()
    }

    /// A required input of one of `dtypes`.
    pub(crate) fn typed_input(&self, i: usize, dtypes: &[DType]) -> Result<&'a Value, ExecError> {
        let v = self.input(i)?;
        if !dtypes.contains(&v.dtype) {
            return Err(self.mismatch(format!(
                "input {i} has type {}, expected one of {dtypes:?}",
                v.dtype
            )));
        }
        Ok(v)
    }

    /// A required f32 input.
    pub(crate) fn f32_input(&self, i: usize) -> Result<&'a Value, ExecError> {
        self.typed_input(i, &[DType::F32])
    }

    /// An optional input whose value must be known at load, as integers.
    pub(crate) fn const_ints(&self, i: usize) -> Result<Option<Vec<i64>>, ExecError> {
        let Some(v) = self.opt_input(i) else {
            return Ok(None);
        };
        let Some(data) = &v.konst else {
            return Err(self.invalid(format!(
                "input {i} must be a constant known at load (shapes are static)"
            )));
        };
        match &**data {
            TensorData::I64(d) => Ok(Some(d.clone())),
            TensorData::I32(d) => Ok(Some(d.iter().map(|&x| i64::from(x)).collect())),
            other => Err(self.mismatch(format!(
                "input {i} must be int64/int32, got {}",
                other.dtype()
            ))),
        }
    }

    /// An optional input whose value must be known at load, as floats.
    pub(crate) fn const_floats(&self, i: usize) -> Result<Option<Vec<f32>>, ExecError> {
        let Some(v) = self.opt_input(i) else {
            return Ok(None);
        };
        let Some(data) = &v.konst else {
            return Err(self.invalid(format!("input {i} must be a constant known at load")));
        };
        match &**data {
            TensorData::F32(d) => Ok(Some(d.clone())),
            other => Err(self.mismatch(format!("input {i} must be float, got {}", other.dtype()))),
        }
    }

    /// An optional scalar (or 1-element) integer input known at load; `what` names it in
    /// errors.
    pub(crate) fn const_scalar_i64(&self, i: usize, what: &str) -> Result<Option<i64>, ExecError> {
        match self.const_ints(i)?.as_deref() {
            None => Ok(None),
            Some([v]) => Ok(Some(*v)),
            Some(v) => {
                Err(self.mismatch(format!("{what} must be a scalar, has {} elements", v.len())))
            }
        }
    }

    /// An optional constant scalar (or 1-element) float input.
    pub(crate) fn const_scalar_f32(&self, i: usize) -> Result<Option<f32>, ExecError> {
        match self.const_floats(i)? {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(v) => Err(self.mismatch(format!(
                "input {i} must be a scalar, has {} elements",
                v.len()
            ))),
        }
    }

    fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.attrs.iter().find(|a| a.name == name)
    }

    fn check_type(&self, a: &AttributeProto, want: i32) -> Result<(), ExecError> {
        if a.r#type != want && a.r#type != AT_UNDEFINED {
            return Err(self.invalid(format!(
                "attribute '{}' has type {}, expected {}",
                a.name, a.r#type, want
            )));
        }
        if !a.ref_attr_name.is_empty() {
            return Err(self.invalid(format!(
                "attribute '{}' refers to a function attribute",
                a.name
            )));
        }
        Ok(())
    }

    /// Whether the attribute is present.
    pub(crate) fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    pub(crate) fn attr_int(&self, name: &str) -> Result<Option<i64>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_INT)?;
                Ok(Some(a.i))
            }
        }
    }

    pub(crate) fn attr_int_or(&self, name: &str, default: i64) -> Result<i64, ExecError> {
        Ok(self.attr_int(name)?.unwrap_or(default))
    }

    /// A 0/1 integer attribute.
    pub(crate) fn attr_bool_or(&self, name: &str, default: bool) -> Result<bool, ExecError> {
        match self.attr_int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.invalid(format!("attribute '{name}' must be 0 or 1, got {v}"))),
        }
    }

    pub(crate) fn attr_float(&self, name: &str) -> Result<Option<f32>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_FLOAT)?;
                Ok(Some(a.f))
            }
        }
    }

    pub(crate) fn attr_float_or(&self, name: &str, default: f32) -> Result<f32, ExecError> {
        Ok(self.attr_float(name)?.unwrap_or(default))
    }

    pub(crate) fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_INTS)?;
                Ok(Some(a.ints.clone()))
            }
        }
    }

    pub(crate) fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_FLOATS)?;
                Ok(Some(a.floats.clone()))
            }
        }
    }

    pub(crate) fn attr_string(&self, name: &str) -> Result<Option<String>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_STRING)?;
                String::from_utf8(a.s.clone())
                    .map(Some)
                    .map_err(|_| self.invalid(format!("attribute '{name}' is not UTF-8")))
            }
        }
    }

    pub(crate) fn attr_strings(&self, name: &str) -> Result<Option<Vec<String>>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_STRINGS)?;
                a.strings
                    .iter()
                    .map(|b| {
                        String::from_utf8(b.clone())
                            .map_err(|_| self.invalid(format!("attribute '{name}' is not UTF-8")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
        }
    }

    pub(crate) fn attr_string_or(&self, name: &str, default: &str) -> Result<String, ExecError> {
        Ok(self
            .attr_string(name)?
            .unwrap_or_else(|| default.to_owned()))
    }

    pub(crate) fn attr_tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, ExecError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => {
                self.check_type(a, AT_TENSOR)?;
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.invalid(format!("attribute '{name}' holds no tensor")))
            }
        }
    }

    /// Decodes a tensor attribute.
    pub(crate) fn decode(&self, t: &TensorProto) -> Result<(Vec<usize>, TensorData), ExecError> {
        decode_tensor(self.model, t, self.base)
    }

    /// Resolves a possibly negative axis against `rank`.
    pub(crate) fn axis(&self, axis: i64, rank: usize) -> Result<usize, ExecError> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r {
            return Err(self.invalid(format!("axis {axis} out of range for rank {rank}")));
        }
        Ok(a as usize)
    }

    /// Resolves a list of axes; rejects duplicates; returns them sorted.
    pub(crate) fn axes(&self, axes: &[i64], rank: usize) -> Result<Vec<usize>, ExecError> {
        let mut out = axes
            .iter()
            .map(|&a| self.axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable();
        let n = out.len();
        out.dedup();
        if out.len() != n {
            return Err(self.invalid(format!("repeated axis in {axes:?}")));
        }
        Ok(out)
    }

    /// Converts non-negative integers to `usize`.
    pub(crate) fn non_negative(&self, what: &str, v: &[i64]) -> Result<Vec<usize>, ExecError> {
        v.iter()
            .map(|&x| {
                usize::try_from(x)
                    .map_err(|_| self.invalid(format!("{what} must be non-negative, got {v:?}")))
            })
            .collect()
    }

    /// Converts strictly positive integers to `usize`.
    pub(crate) fn positive(&self, what: &str, v: &[i64]) -> Result<Vec<usize>, ExecError> {
        v.iter()
            .map(|&x| match usize::try_from(x) {
                Ok(u) if u > 0 => Ok(u),
                _ => Err(self.invalid(format!("{what} must be positive, got {v:?}"))),
            })
            .collect()
    }
}
