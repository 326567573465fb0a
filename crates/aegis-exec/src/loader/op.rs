//! The operator set of an [`crate::graph::ExecutionGraph`]: one [`Op`] variant per supported
//! ONNX operator, with every attribute parsed, validated and defaulted at load.
//!
//! Conventions every variant follows (so kernels need no ONNX knowledge):
//! - Axes are non-negative and in range for the input's rank (negative ONNX axes resolved).
//! - Inputs that ONNX passes as tensors but that we require to be constant at load (shapes,
//!   axes, pads, scales, slice bounds, clip bounds) are resolved into the variant's fields and are
//!   **not** among the node's inputs any more. Remaining inputs keep ONNX order; optional inputs
//!   that were absent are simply missing (see each variant for the input list).
//! - Spatial ops (Conv, pools) use NCHW-style layout `[N, C, spatial...]`; `pads` is
//!   `[begin_0, begin_1, ..., end_0, end_1, ...]` over the spatial axes, with `auto_pad` already
//!   resolved to explicit pads from the static shapes.
//! - Output shapes are in the node's output [`crate::graph::TensorInfo`]s; a kernel should take
//!   the output extent from there rather than recompute it.

use crate::graph::DType;
use crate::kernels::{
    AttentionSpec, Col2ImSpec, ConvAttrs, DeformSpec, DftSpec, LossReduction, NarrowMode,
    QuantLayout, RnnSpec, RoiAlignSpec, RotarySpec, StftSpec,
};

/// The reduction of an `Op::Reduce` (ONNX `Reduce*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    /// `ReduceMean`.
    Mean,
    /// `ReduceSum`.
    Sum,
    /// `ReduceMax`.
    Max,
    /// `ReduceMin`.
    Min,
    /// `ReduceProd`.
    Prod,
    /// `ReduceL1`: sum of absolute values.
    L1,
    /// `ReduceL2`: square root of the sum of squares.
    L2,
    /// `ReduceSumSquare`.
    SumSquare,
    /// `ReduceLogSum`: natural log of the sum.
    LogSum,
    /// `ReduceLogSumExp`: `log(sum(exp(x)))`, computed with the maximum subtracted.
    LogSumExp,
}

impl ReduceKind {
    /// The ONNX operator name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Self::Mean => "ReduceMean",
            Self::Sum => "ReduceSum",
            Self::Max => "ReduceMax",
            Self::Min => "ReduceMin",
            Self::Prod => "ReduceProd",
            Self::L1 => "ReduceL1",
            Self::L2 => "ReduceL2",
            Self::SumSquare => "ReduceSumSquare",
            Self::LogSum => "ReduceLogSum",
            Self::LogSumExp => "ReduceLogSumExp",
        }
    }
}

/// Attribute-free one-input elementwise functions (`Op::Math`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MathFn {
    /// `-x` (f32, i32, i64).
    Neg,
    /// `|x|` (f32, i32, i64).
    Abs,
    /// `-1`, `0` or `1` by the sign of `x`; NaN stays NaN (f32, i32, i64).
    Sign,
    /// `exp(x)`.
    Exp,
    /// Natural log.
    Log,
    /// `1 / x`.
    Reciprocal,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Round half to even.
    Round,
    /// `sin(x)`.
    Sin,
    /// `cos(x)`.
    Cos,
    /// `tan(x)`.
    Tan,
    /// `asin(x)`.
    Asin,
    /// `acos(x)`.
    Acos,
    /// `atan(x)`.
    Atan,
    /// `sinh(x)`.
    Sinh,
    /// `cosh(x)`.
    Cosh,
    /// `asinh(x)`.
    Asinh,
    /// `acosh(x)`.
    Acosh,
    /// `atanh(x)`.
    Atanh,
    /// `log(1 + exp(x))`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x tanh(softplus(x))` (opset 18+).
    Mish,
    /// NaN test → bool.
    IsNaN,
}

impl MathFn {
    /// The ONNX operator name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Self::Neg => "Neg",
            Self::Abs => "Abs",
            Self::Sign => "Sign",
            Self::Exp => "Exp",
            Self::Log => "Log",
            Self::Reciprocal => "Reciprocal",
            Self::Floor => "Floor",
            Self::Ceil => "Ceil",
            Self::Round => "Round",
            Self::Sin => "Sin",
            Self::Cos => "Cos",
            Self::Tan => "Tan",
            Self::Asin => "Asin",
            Self::Acos => "Acos",
            Self::Atan => "Atan",
            Self::Sinh => "Sinh",
            Self::Cosh => "Cosh",
            Self::Asinh => "Asinh",
            Self::Acosh => "Acosh",
            Self::Atanh => "Atanh",
            Self::Softplus => "Softplus",
            Self::Softsign => "Softsign",
            Self::Mish => "Mish",
            Self::IsNaN => "IsNaN",
        }
    }

    /// Every function, for parsing by name.
    pub const ALL: [MathFn; 24] = [
        Self::Neg,
        Self::Abs,
        Self::Sign,
        Self::Exp,
        Self::Log,
        Self::Reciprocal,
        Self::Floor,
        Self::Ceil,
        Self::Round,
        Self::Sin,
        Self::Cos,
        Self::Tan,
        Self::Asin,
        Self::Acos,
        Self::Atan,
        Self::Sinh,
        Self::Cosh,
        Self::Asinh,
        Self::Acosh,
        Self::Atanh,
        Self::Softplus,
        Self::Softsign,
        Self::Mish,
        Self::IsNaN,
    ];

    /// Whether the function also takes integer inputs (same output type).
    pub fn takes_ints(self) -> bool {
        matches!(self, Self::Neg | Self::Abs | Self::Sign)
    }

    /// Whether the output is bool rather than the input's type.
    pub fn to_bool(self) -> bool {
        matches!(self, Self::IsNaN)
    }
}

/// Elementwise comparisons (`Op::Compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareKind {
    /// `a < b`.
    Less,
    /// `a <= b` (opset 12+).
    LessOrEqual,
    /// `a > b`.
    Greater,
    /// `a >= b` (opset 12+).
    GreaterOrEqual,
}

impl CompareKind {
    /// The ONNX operator name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Self::Less => "Less",
            Self::LessOrEqual => "LessOrEqual",
            Self::Greater => "Greater",
            Self::GreaterOrEqual => "GreaterOrEqual",
        }
    }
}

/// Elementwise bit operations on integers (`Op::Bitwise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BitwiseKind {
    /// `a & b` (BitwiseAnd).
    And,
    /// `a | b` (BitwiseOr).
    Or,
    /// `a ^ b` (BitwiseXor).
    Xor,
    /// `a << b` (BitShift `LEFT`; a shift by the width or more gives 0).
    ShiftLeft,
    /// `a >> b` (BitShift `RIGHT`; a shift by the width or more gives 0).
    ShiftRight,
}

impl BitwiseKind {
    /// The ONNX operator name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Self::And => "BitwiseAnd",
            Self::Or => "BitwiseOr",
            Self::Xor => "BitwiseXor",
            Self::ShiftLeft | Self::ShiftRight => "BitShift",
        }
    }
}

/// Elementwise logical operations on bools (`Op::Logic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicKind {
    /// `a && b`.
    And,
    /// `a || b`.
    Or,
    /// `a != b`.
    Xor,
}

impl LogicKind {
    /// The ONNX operator name.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Self::And => "And",
            Self::Or => "Or",
            Self::Xor => "Xor",
        }
    }
}

/// How ScatterElements/ScatterND combine an update with the data (opset 16/18 `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScatterReduce {
    /// Replace.
    None,
    /// Add.
    Add,
    /// Multiply.
    Mul,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// Which tanh-based approximation `Gelu` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeluApproximation {
    /// Exact: `0.5 x (1 + erf(x / sqrt 2))`.
    None,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    Tanh,
}

/// Padding mode of `Pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// Fill with `value`.
    Constant,
    /// Mirror without repeating the edge element.
    Reflect,
    /// Repeat the edge element.
    Edge,
    /// Wrap around (opset 19+).
    Wrap,
}

/// Interpolation of `Resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    /// Nearest neighbour, rounding with `nearest_mode`.
    Nearest,
    /// (Multi-)linear interpolation over the resized axes.
    Linear,
    /// Cubic convolution over the resized axes (coefficient in `Op::Resize::cubic_coeff_a`).
    Cubic,
}

/// What `GridSample` reads outside the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridPaddingMode {
    /// Zeros.
    Zeros,
    /// The nearest border value.
    Border,
    /// The input reflected at its borders.
    Reflection,
}

/// How an output coordinate maps back to an input coordinate in `Resize`
/// (`x_out` an output index, `scale` the per-axis scale, `len_*` the axis lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinateTransform {
    /// `(x_out + 0.5) / scale - 0.5`.
    HalfPixel,
    /// `(x_out + 0.5) / scale - 0.5` when `len_out > 1`, else 0.
    PytorchHalfPixel,
    /// `x_out * (len_in - 1) / (len_out - 1)` (0 when `len_out == 1`).
    AlignCorners,
    /// `x_out / scale`.
    Asymmetric,
    /// `(x_out + 0.5) / scale` (nearest only in ONNX, accepted for both here).
    TfHalfPixelForNn,
    /// `(len_in/2)(1 - 1/scale') + (x_out + 0.5)/scale - 0.5` with `scale' = len_out/len_in`
    /// (opset 19+).
    HalfPixelSymmetric,
    /// `x_out * (end - start) (len_in - 1) / (len_out - 1) + start (len_in - 1)` over the
    /// region of interest `Op::Resize::roi`; outputs outside the input take
    /// `extrapolation_value` (linear/cubic only).
    TfCropAndResize,
}

/// Rounding of the mapped coordinate for nearest `Resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NearestMode {
    /// Round half down.
    RoundPreferFloor,
    /// Round half up.
    RoundPreferCeil,
    /// `floor`.
    Floor,
    /// `ceil`.
    Ceil,
}

/// A validated operator. See the module docs for the conventions. "Inputs" lists the node's
/// input tensors in order after constant inputs were resolved; `?` marks an optional input.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Elementwise `a + b`, multidirectional (numpy) broadcasting. Inputs: `a, b`.
    Add,
    /// Elementwise `a - b`, broadcasting. Inputs: `a, b`.
    Sub,
    /// Elementwise `a * b`, broadcasting. Inputs: `a, b`.
    Mul,
    /// Elementwise `a / b`, broadcasting (integer division truncates). Inputs: `a, b`.
    Div,
    /// Elementwise `a ^ b`, broadcasting; output dtype is `a`'s. Inputs: `a, b`.
    Pow,
    /// Elementwise remainder, broadcasting. `fmod == true`: sign of the dividend (C `fmod`),
    /// otherwise sign of the divisor (Python `%`, integers only). Inputs: `a, b`.
    Mod {
        /// ONNX `fmod` attribute.
        fmod: bool,
    },
    /// Elementwise `a == b` → bool, broadcasting. Inputs: `a, b`.
    Equal,
    /// `cond ? x : y`, broadcasting over all three. Inputs: `cond (bool), x, y`.
    Where,
    /// Elementwise sum of all inputs, broadcasting. Inputs: one or more.
    Sum,
    /// `max(x, 0)`. Inputs: `x`.
    Relu,
    /// `1 / (1 + exp(-x))`. Inputs: `x`.
    Sigmoid,
    /// `tanh(x)`. Inputs: `x`.
    Tanh,
    /// Gauss error function. Inputs: `x`.
    Erf,
    /// `sqrt(x)`. Inputs: `x`.
    Sqrt,
    /// Gaussian error linear unit (opset 20+). Inputs: `x`.
    Gelu {
        /// Exact or tanh approximation.
        approximate: GeluApproximation,
    },
    /// `max(0, min(1, alpha x + beta))`. Inputs: `x`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * max(0, min(1, x/6 + 0.5))` (opset 14+). Inputs: `x`.
    HardSwish,
    /// `min(max(x, min), max)`; bounds from attributes (opset < 11) or constant inputs (absent
    /// bound = ±infinity). Inputs: `x`.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `min(max(x, min), max)` with the bounds read at run time: integer `x` (opset 12+), or
    /// float bounds not known at load. Each bound is a scalar of `x`'s type; an absent one does
    /// not clamp. Inputs: `x`, then `min` when `min`, then `max` when `max`.
    ClipBounds {
        /// Whether a lower bound is wired.
        min: bool,
        /// Whether an upper bound is wired.
        max: bool,
    },
    /// Element type conversion (float→int truncates toward zero; to bool is `!= 0`).
    /// Inputs: `x`.
    Cast {
        /// Target element type.
        to: DType,
        /// How values that do not fit a narrow target convert (Cast's `saturate` and
        /// `round_mode`); the default for every other target, which ignores it.
        narrow: NarrowMode,
    },
    /// 2-D (or N-D) convolution with `group`s. Inputs: `x [N, C, spatial...]`,
    /// `w [M, C/group, kernel...]`, `bias? [M]`.
    Conv {
        /// Kernel extent per spatial axis.
        kernel_shape: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// `[begins..., ends...]` over spatial axes.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Number of groups (divides C and M).
        group: usize,
    },
    /// Transposed convolution. Inputs: `x [N, C, spatial...]`, `w [C, M/group, kernel...]`,
    /// `bias? [M]`. `output_shape` and `auto_pad` are resolved into `pads`/`output_padding`,
    /// so `out = stride (in - 1) + output_padding + (kernel - 1) dilation + 1 - pad_begin - pad_end`.
    ConvTranspose {
        /// Kernel extent per spatial axis.
        kernel_shape: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// `[begins..., ends...]` over spatial axes (cropping of the full output).
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// Extra size added at the end of each spatial axis.
        output_padding: Vec<usize>,
        /// Number of groups.
        group: usize,
    },
    /// Inference-mode batch normalization over axis 1:
    /// `(x - mean) / sqrt(var + epsilon) * scale + bias`. Inputs: `x, scale, bias, mean, var`.
    /// Usually folded into a preceding `Conv` at load.
    BatchNormalization {
        /// Added to the variance.
        epsilon: f32,
    },
    /// Average pooling. Inputs: `x [N, C, spatial...]`.
    AveragePool {
        /// Window per spatial axis.
        kernel_shape: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// `[begins..., ends...]`.
        pads: Vec<usize>,
        /// Dilation per spatial axis (opset 19+, else 1).
        dilations: Vec<usize>,
        /// Whether padded cells count in the divisor. Cells beyond the padding (possible with
        /// `ceil_mode`) never count.
        count_include_pad: bool,
        /// The output shape used ceil instead of floor (already reflected in the output shape).
        ceil_mode: bool,
    },
    /// Max pooling (without its optional `Indices` output: see [`Op::MaxPoolIndices`]).
    /// Inputs: `x`.
    MaxPool {
        /// Window per spatial axis.
        kernel_shape: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// `[begins..., ends...]`; padded cells are ignored (treated as -infinity).
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// The output shape used ceil instead of floor (already reflected in the output shape).
        ceil_mode: bool,
    },
    /// Max pooling with its `Indices` output (f32): each output's value, and the flat index
    /// into `x` of the first tap in window order that holds it. Outputs: `Y`, `Indices`
    /// (i64). Inputs: `x`.
    MaxPoolIndices {
        /// Window per spatial axis.
        kernel_shape: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// `[begins..., ends...]`; padded cells are never chosen.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// The output shape used ceil instead of floor (already reflected in the output shape).
        ceil_mode: bool,
        /// `storage_order = 1`: the spatial part of an index counts the first spatial axis
        /// fastest (column-major) instead of the last.
        column_major: bool,
    },
    /// The inverse of a MaxPool with indices: a zero tensor of the output shape (known at
    /// load: the `output_shape` input, or the default from the window attributes) with
    /// `out[indices[j]] = x[j]`. Inputs: `x`, `indices` (i64, `x`'s shape).
    MaxUnpool,
    /// Deformable 2-D convolution. Inputs: `X [N, C, H, W]`, `W [OC, C / group, kh, kw]`,
    /// `offset [N, offset_group * 2 * kh * kw, oh, ow]`, then `B [OC]` and `mask [N,
    /// offset_group * kh * kw, oh, ow]` when present.
    DeformConv {
        /// Geometry.
        spec: DeformSpec,
        /// `B` is among the inputs.
        bias: bool,
        /// `mask` is among the inputs (after `B` when both are).
        mask: bool,
    },
    /// Sliding blocks summed back into an image (`torch.nn.Fold`). Inputs: `x [N, C *
    /// prod(block), L]`. Output `[N, C, image...]`.
    Col2Im(Col2ImSpec),
    /// Regions of interest pooled to a fixed grid by bilinear sampling. Inputs: `X [N, C, H,
    /// W]`, `rois [R, 4]`, `batch_indices [R]` (i64). Output `[R, C, out_h, out_w]`.
    RoiAlign(RoiAlignSpec),
    /// Discrete Fourier transform along one axis (its length and the axis known at load).
    /// Inputs: `x [..., 1 or 2]` (real, or complex as real/imaginary pairs). Output: complex,
    /// last axis 2.
    Dft(DftSpec),
    /// Short-time Fourier transform. Inputs: `signal [batch, len, 1 or 2]`, `window?`.
    /// Output `[batch, frames, bins, 2]`.
    Stft(StftSpec),
    /// `NegativeLogLikelihoodLoss`, or with `log_softmax` `SoftmaxCrossEntropyLoss` (the
    /// loss of the scores' log-softmax over axis 1). Inputs: `x [N, C, d...]` (f32), `target
    /// [N, d...]` (i32/i64), optional `weight [C]`. Outputs: the loss (`[N, d...]`, or a
    /// scalar when reduced), and for `SoftmaxCrossEntropyLoss` optionally the log-softmax.
    NllLoss {
        /// How the per-element losses are combined.
        reduction: LossReduction,
        /// Targets equal to this contribute neither loss nor weight.
        ignore_index: Option<i64>,
        /// Take the log-softmax of `x` first.
        log_softmax: bool,
    },
    /// Mean over all spatial axes, keeping them as size 1. Inputs: `x [N, C, spatial...]`.
    GlobalAveragePool,
    /// Local response normalization across channels (axis 1):
    /// `x / (bias + alpha/size * sum_{c' in window} x_c'^2) ^ beta`, window
    /// `[c - floor((size-1)/2), c + ceil((size-1)/2)]`. Inputs: `x`.
    Lrn {
        /// Window size.
        size: usize,
        /// Scale.
        alpha: f32,
        /// Exponent.
        beta: f32,
        /// Offset.
        bias: f32,
    },
    /// `alpha * A' B' + beta * C` with `A'`/`B'` optionally transposed; `C` broadcasts to
    /// `[M, N]`. Inputs: `a [M,K] or [K,M]`, `b [K,N] or [N,K]`, `c?`.
    Gemm {
        /// Scale of the product.
        alpha: f32,
        /// Scale of `c`.
        beta: f32,
        /// Use `Aᵀ`.
        trans_a: bool,
        /// Use `Bᵀ`.
        trans_b: bool,
    },
    /// numpy `matmul`: 1-D operands promoted and the added axis removed, batch axes broadcast.
    /// Inputs: `a, b`.
    MatMul,
    /// Reshape to `[prod(shape[..axis]), prod(shape[axis..])]`; a no-op on the data.
    /// Inputs: `x`.
    Flatten {
        /// Split point in `0..=rank`.
        axis: usize,
    },
    /// A no-op on the data; the output shape is the resolved target shape. Inputs: `x`.
    Reshape {
        /// The resolved target shape (equals the output tensor's shape).
        shape: Vec<usize>,
    },
    /// Removes size-1 axes; a no-op on the data. Inputs: `x`.
    Squeeze {
        /// Input axes removed, sorted.
        axes: Vec<usize>,
    },
    /// Inserts size-1 axes; a no-op on the data. Inputs: `x`.
    Unsqueeze {
        /// Output axes inserted, sorted.
        axes: Vec<usize>,
    },
    /// Concatenation along `axis`. Inputs: one or more.
    Concat {
        /// Axis.
        axis: usize,
    },
    /// Splits along `axis` into consecutive pieces of `splits[i]` elements, one per output.
    /// Inputs: `x`.
    Split {
        /// Axis.
        axis: usize,
        /// Length of each output along `axis` (sums to the input's extent).
        splits: Vec<usize>,
    },
    /// Strided slice, resolved over **every** axis of the input: output element `i` along
    /// axis `a` reads input index `starts[a] + i * steps[a]` (steps may be negative); the count
    /// per axis is the output shape. Inputs: `x`.
    Slice {
        /// First input index read per axis (valid whenever the output axis is non-empty).
        starts: Vec<usize>,
        /// Step per axis (non-zero).
        steps: Vec<i64>,
    },
    /// numpy `take` along `axis`; negative indices count from the end. Inputs:
    /// `data, indices (int32/int64)`.
    Gather {
        /// Axis of `data`.
        axis: usize,
    },
    /// Permutes axes: output axis `i` is input axis `perm[i]`. Inputs: `x`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Broadcasts `x` to `shape` (numpy rules). Inputs: `x`.
    Expand {
        /// The resolved output shape.
        shape: Vec<usize>,
    },
    /// Padding with negative values cropping. Inputs: `x`.
    Pad {
        /// Mode.
        mode: PadMode,
        /// `[begins..., ends...]` over **all** axes of `x`.
        pads: Vec<i64>,
        /// Fill value for `PadMode::Constant`.
        value: f32,
    },
    /// Resize of the trailing (or any) axes; the output shape is resolved.
    /// Inputs: `x`.
    Resize {
        /// Interpolation.
        mode: ResizeMode,
        /// Coordinate mapping.
        coordinate_transform: CoordinateTransform,
        /// Rounding for `Nearest`.
        nearest_mode: NearestMode,
        /// Scale per axis used in the coordinate mapping (the given scale, or
        /// `out / in` when the model gave sizes); 1.0 on unchanged axes.
        scales: Vec<f32>,
        /// Linear/cubic: weights of samples outside the input are set to 0 and renormalised.
        exclude_outside: bool,
        /// Cubic only: the `a` of the cubic convolution kernel (ONNX default -0.75).
        cubic_coeff_a: f32,
        /// Linear/cubic: widen the filter when downsampling (opset 18+).
        antialias: bool,
        /// `TfCropAndResize` only: `[starts..., ends...]` over **all** axes (normalised
        /// coordinates; 0 and 1 on axes the model did not name). Empty otherwise.
        roi: Vec<f32>,
        /// `TfCropAndResize` only: value of outputs that map outside the input.
        extrapolation_value: f32,
    },
    /// A reduction over `axes` (empty = identity copy). Inputs: `x` (f32; Sum, Max, Min and
    /// Prod also i32/i64).
    Reduce {
        /// Which reduction.
        kind: ReduceKind,
        /// Reduced axes, sorted.
        axes: Vec<usize>,
        /// Whether reduced axes stay as size 1.
        keepdims: bool,
    },
    /// Index of the largest (`max`) or smallest element along `axis`, as int64; ties give the
    /// first index, or the last with `select_last_index`; a NaN counts as the extreme.
    /// Inputs: `x` (f32, i32, i64).
    ArgReduce {
        /// ArgMax (true) or ArgMin.
        max: bool,
        /// Reduced axis.
        axis: usize,
        /// Whether the axis stays as size 1.
        keepdims: bool,
        /// Ties resolve to the last index.
        select_last_index: bool,
    },
    /// Softmax. `flatten_2d == true` (opset < 13): the input is viewed as
    /// `[prod(shape[..axis]), prod(shape[axis..])]` and softmax runs over the second dimension;
    /// otherwise along the single axis `axis`. Inputs: `x`.
    Softmax {
        /// Axis.
        axis: usize,
        /// Opset < 13 coercion to 2-D.
        flatten_2d: bool,
    },
    /// Layer normalization over axes `axis..rank` (opset 17+). Inputs: `x, scale, bias?`
    /// (`scale`/`bias` broadcast to `shape[axis..]`). Outputs: `y`, and when the model declares
    /// them `mean?` and `inv_std_dev?` (shape `shape[..axis]` then 1s; stash_type float).
    LayerNormalization {
        /// First normalized axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// A one-input elementwise function with no attribute. Inputs: `x` (see [`MathFn`] for
    /// the element types each accepts).
    Math {
        /// Which function.
        f: MathFn,
    },
    /// `x < 0 ? alpha x : x`. Inputs: `x`.
    LeakyRelu {
        /// Negative slope (ONNX default 0.01).
        alpha: f32,
    },
    /// `x < 0 ? alpha (exp(x) - 1) : x`. Inputs: `x`.
    Elu {
        /// Scale of the negative part (default 1).
        alpha: f32,
    },
    /// `gamma (x <= 0 ? alpha (exp(x) - 1) : x)`. Inputs: `x`.
    Selu {
        /// Default 1.67326319217681884765625.
        alpha: f32,
        /// Default 1.05070102214813232421875.
        gamma: f32,
    },
    /// `max(0, x) + min(0, alpha (exp(x / alpha) - 1))` (opset 12+). Inputs: `x`.
    Celu {
        /// Default 1.
        alpha: f32,
    },
    /// `x * sigmoid(alpha x)` (ONNX `Swish`, opset 24). Inputs: `x`.
    Swish {
        /// Default 1.
        alpha: f32,
    },
    /// `a * sigmoid(alpha a) * b` (ONNX `SwiGLU`, opset 28; `a` and `b` of one shape).
    /// Inputs: `a` (the gate), `b`.
    SwiGlu {
        /// Default 1.
        alpha: f32,
    },
    /// RMS normalization over axes `axis..rank` (opset 23). Inputs: `x, scale` (`scale`
    /// broadcast to `shape[axis..]`).
    RmsNormalization {
        /// First normalized axis.
        axis: usize,
        /// Added to the mean of squares.
        epsilon: f32,
    },
    /// `x / (sum |x|^p)^(1/p)` along `axis` (zero where the norm is zero). Inputs: `x`.
    LpNormalization {
        /// The normalised axis.
        axis: usize,
        /// 1 or 2.
        p: u8,
    },
    /// The input's bytes reinterpreted as `to` (ONNX `BitCast`, opset 26; same element
    /// size; a nonzero byte read as bool is `true`). Inputs: `x`.
    BitCast {
        /// The output's element type.
        to: DType,
    },
    /// A cache with an update's rows written along `axis` (ONNX `TensorScatter`, opset 24).
    /// Inputs: `past_cache, update`, then `write_indices` (i64 `[batch]`) when present.
    TensorScatter {
        /// The sequence axis (not 0).
        axis: usize,
        /// `mode = "circular"`: rows wrap around the cache.
        circular: bool,
    },
    /// Rotary position embedding (opset 23). Inputs: `X, cos_cache, sin_cache`, then
    /// `position_ids` (i64) when `spec.positions > 0`.
    RotaryEmbedding {
        /// Shapes and attributes.
        spec: RotarySpec,
    },
    /// `x > alpha ? x : 0` (opset 10+). Inputs: `x`.
    ThresholdedRelu {
        /// Default 1.
        alpha: f32,
    },
    /// `x < -lambd ? x + bias : x > lambd ? x - bias : 0` (opset 9+). Inputs: `x`.
    Shrink {
        /// Default 0.
        bias: f32,
        /// Default 0.5.
        lambd: f32,
    },
    /// Infinity test → bool (opset 10+). Inputs: `x`.
    IsInf {
        /// Report -infinity (default true).
        detect_negative: bool,
        /// Report +infinity (default true).
        detect_positive: bool,
    },
    /// `x < 0 ? slope x : x`, `slope` broadcasting to `x` (unidirectional). Inputs: `x, slope`.
    PRelu,
    /// Elementwise maximum of all inputs, broadcasting; NaN propagates. Inputs: one or more.
    Max,
    /// Elementwise minimum of all inputs, broadcasting; NaN propagates. Inputs: one or more.
    Min,
    /// Elementwise mean of all inputs, broadcasting (f32). Inputs: one or more.
    Mean,
    /// An elementwise comparison → bool, broadcasting. Inputs: `a, b` of one type.
    Compare {
        /// Which comparison.
        cmp: CompareKind,
    },
    /// An elementwise logical operation on bools, broadcasting. Inputs: `a, b`.
    Logic {
        /// Which operation.
        op: LogicKind,
    },
    /// Logical negation of a bool tensor. Inputs: `x`.
    Not,
    /// An elementwise bit operation on integers of one type, broadcasting. Inputs: `a, b`.
    Bitwise {
        /// Which operation.
        op: BitwiseKind,
    },
    /// Bitwise complement of an integer tensor. Inputs: `x`.
    BitwiseNot,
    /// Mean over all spatial axes replaced by the maximum. Inputs: `x [N, C, spatial...]`.
    GlobalMaxPool,
    /// `log(softmax(x))`, computed stably; axis handling as [`Op::Softmax`]. Inputs: `x`.
    LogSoftmax {
        /// Axis.
        axis: usize,
        /// Opset < 13 coercion to 2-D.
        flatten_2d: bool,
    },
    /// Repeats `x` `repeats[a]` times along every axis `a`. Inputs: `x`.
    Tile {
        /// Repetitions per axis (resolved from the constant `repeats` input).
        repeats: Vec<usize>,
    },
    /// Moves `blocksize x blocksize` blocks of channels into space (`DepthToSpace`) or space
    /// into channels (`SpaceToDepth`). Inputs: `x [N, C, H, W]`.
    BlockShuffle {
        /// `DepthToSpace` (true) or `SpaceToDepth`.
        to_space: bool,
        /// Block edge.
        blocksize: usize,
        /// `DepthToSpace` mode `CRD` (column-row-depth) instead of the default `DCR`.
        crd: bool,
    },
    /// Per-instance, per-channel normalisation over the spatial axes:
    /// `scale[c] (x - mean) / sqrt(var + epsilon) + bias[c]`. Inputs: `x, scale, bias`.
    InstanceNormalization {
        /// Added to the variance.
        epsilon: f32,
    },
    /// `out[p] = data[p with axis replaced by indices[p]]`; `out` has `indices`' shape.
    /// Inputs: `data, indices (int32/int64)`.
    GatherElements {
        /// Axis of `data`.
        axis: usize,
    },
    /// `out = data` with `updates[p]` written (or combined) at `p` with axis replaced by
    /// `indices[p]`, in order. Inputs: `data, indices, updates`.
    ScatterElements {
        /// Axis of `data`.
        axis: usize,
        /// Combination with the existing value.
        reduction: ScatterReduce,
    },
    /// `out = data` with slices `data[indices[t]]` replaced (or combined) by `updates[t]`.
    /// Inputs: `data, indices (int64, last axis = tuple length), updates`.
    ScatterND {
        /// Combination with the existing value.
        reduction: ScatterReduce,
    },
    /// One-hot encoding: an axis of `depth` inserted at `axis`, `values[1]` at the index and
    /// `values[0]` elsewhere. Inputs: `indices, values [2]` (`depth` resolved at load).
    OneHot {
        /// Length of the inserted axis.
        depth: usize,
        /// Where it is inserted (`0..=rank` of indices).
        axis: usize,
    },
    /// The `k` largest (or smallest) elements along `axis`, sorted, with their int64 indices
    /// (ties: lower index first). Inputs: `x`. Outputs: `values, indices`.
    TopK {
        /// How many (resolved from the constant `K`).
        k: usize,
        /// Axis.
        axis: usize,
        /// Largest (true) or smallest.
        largest: bool,
    },
    /// Cumulative sum (CumProd: product) along `axis`. Inputs: `x` (`axis` resolved at
    /// load).
    CumSum {
        /// Axis.
        axis: usize,
        /// Each output leaves out its own element.
        exclusive: bool,
        /// From the end.
        reverse: bool,
        /// Products (CumProd, opset 26) instead of sums.
        product: bool,
    },
    /// Slices of `data` addressed by index tuples (the last axis of `indices`), after
    /// `batch_dims` leading axes shared by both. Inputs: `data, indices (int64)`.
    GatherNd {
        /// Leading axes of `data` and `indices` that are batch axes.
        batch_dims: usize,
    },
    /// 1 at the first largest element of each row, 0 elsewhere; rows as in
    /// [`Op::Softmax`]. Inputs: `x`.
    Hardmax {
        /// Axis.
        axis: usize,
        /// Opset < 13 coercion to 2-D.
        flatten_2d: bool,
    },
    /// `(x - mean) / (std + 1e-9)` over `axes`. Inputs: `x`.
    MeanVarianceNormalization {
        /// Reduced axes (default `[0, 2, 3]`).
        axes: Vec<usize>,
    },
    /// Per-instance normalisation over groups of channels, then a per-channel (opset 21) or
    /// per-group (opset 18) scale and bias. Inputs: `x, scale, bias`.
    GroupNormalization {
        /// Number of channel groups (divides `C`).
        groups: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// `(sum of |x|^p over the window)^(1/p)` (GlobalLpPool is a window over the whole
    /// plane). Inputs: `x`.
    LpPool {
        /// Window per spatial axis.
        kernel_shape: Vec<usize>,
        /// Stride per spatial axis.
        strides: Vec<usize>,
        /// `[begins..., ends...]`; padded cells contribute 0.
        pads: Vec<usize>,
        /// Dilation per spatial axis.
        dilations: Vec<usize>,
        /// The output shape used ceil instead of floor (already in the output shape).
        ceil_mode: bool,
        /// The norm's order (at least 1).
        p: i64,
    },
    /// Samples `x [N, C, spatial...]` at the normalised points of `grid [N, out..., r]`.
    /// Inputs: `x, grid`.
    GridSample {
        /// Nearest, linear or cubic (`Resize`'s modes; cubic with `a = -0.75`).
        mode: ResizeMode,
        /// Reads outside the input.
        padding: GridPaddingMode,
        /// `-1` and `1` are the corner points' centres (else their outer edges).
        align_corners: bool,
    },
    /// Einsum with its subscripts resolved at load: one letter id per axis of each input and
    /// of the output (ellipsis axes have their own ids), and each id's extent. Inputs: the
    /// operands.
    Einsum {
        /// Per input, its letters.
        terms: Vec<Vec<u8>>,
        /// The output's letters.
        output: Vec<u8>,
        /// Extent of each letter id.
        sizes: Vec<usize>,
    },
    /// An RNN, GRU or LSTM layer. Inputs: `X, W, R`, then those of `B, sequence_lens (int32),
    /// initial_h, initial_c, P` that `present` marks, in that order. Outputs: `Y, Y_h` and,
    /// for LSTM, `Y_c`, as many as the model declares.
    Recurrent {
        /// Cell, sizes, direction, activations, clip and layout.
        spec: RnnSpec,
        /// Which of `B, sequence_lens, initial_h, initial_c, P` the node has.
        present: [bool; 5],
    },
    /// Scaled dot-product attention (ONNX `Attention`, opsets 23-25). Inputs: `Q, K, V`,
    /// then those of `attn_mask` (bool or f32), `past_key, past_value` (together) and
    /// `nonpad_kv_seqlen` (i64) that `present` marks, in that order. Outputs: `Y`,
    /// `present_key`, `present_value`, `qk_matmul_output`, as many as the model declares.
    Attention {
        /// Shapes and attributes.
        spec: AttentionSpec,
        /// Which of `attn_mask`, the cache pair and `nonpad_kv_seqlen` the node has.
        present: [bool; 3],
    },
    /// Reverses each batch entry's first `sequence_lens[b]` steps. Inputs: `x,
    /// sequence_lens (int64)`.
    ReverseSequence {
        /// Batch axis (0 or 1).
        batch_axis: usize,
        /// Time axis (the other of 0 and 1).
        time_axis: usize,
    },
    /// Determinant of each trailing square matrix. Inputs: `x`.
    Det,
    /// `QuantizeLinear` to the output's type (8- or 16-bit integer, or narrow). Inputs: `x`
    /// (f32), `scale` (f32), `zero_point?` (the output's type, shaped as `scale`).
    QuantizeLinear {
        /// How `scale` and `zero_point` map onto `x`.
        layout: QuantLayout,
        /// Out-of-range values saturate (true) or overflow as Cast's table says: read for the
        /// 8-bit float outputs only (opset 19's `saturate`).
        saturate: bool,
    },
    /// `DequantizeLinear` to f32. Inputs: `x` (8-, 16- or 32-bit integer, or narrow), `scale`
    /// (f32), `zero_point?`
    /// (`x`'s type, shaped as `scale`).
    DequantizeLinear {
        /// How `scale` and `zero_point` map onto `x`.
        layout: QuantLayout,
    },
    /// `DynamicQuantizeLinear`. Inputs: `x` (f32). Outputs: `y` (u8), `y_scale` (f32 scalar),
    /// `y_zero_point` (u8 scalar).
    DynamicQuantizeLinear,
    /// `MatMulInteger` to i32. Inputs: `a`, `b` (u8/i8), then the zero points present.
    MatMulInteger {
        /// Whether `a_zero_point` (one, or one per row of `a`) is among the inputs.
        a_zero_point: bool,
        /// Whether `b_zero_point` (one, or one per column of `b`) is among the inputs.
        b_zero_point: bool,
    },
    /// `QLinearMatMul`. Inputs: `a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
    /// y_zero_point` (scales f32; `a_*` one or per row, `b_*` one or per column).
    QLinearMatMul,
    /// `ConvInteger` to i32. Inputs: `x`, `w` (u8/i8), then the zero points present.
    ConvInteger {
        /// The convolution's geometry.
        attrs: ConvAttrs,
        /// Whether `x_zero_point` (one value) is among the inputs.
        x_zero_point: bool,
        /// Whether `w_zero_point` (one, or one per output channel) is among the inputs.
        w_zero_point: bool,
    },
    /// `QLinearConv`. Inputs: `x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
    /// y_zero_point, bias?` (bias i32 `[M]`; `w_*` one or per output channel).
    QLinearConv {
        /// The convolution's geometry.
        attrs: ConvAttrs,
    },
    /// The sampling grid of `N` affine matrices over a `(D,) H, W` output. Inputs: `theta`.
    AffineGrid {
        /// The output's spatial extents (from the constant `size`).
        spatial: Vec<usize>,
        /// As GridSample's.
        align_corners: bool,
    },
    /// Keeps the upper (or lower) triangle of the last two axes from the `k`-th diagonal.
    /// Inputs: `x` (`k` resolved at load).
    Trilu {
        /// Diagonal offset.
        k: i64,
        /// Upper (true) or lower triangle.
        upper: bool,
    },
}

impl Op {
    /// The ONNX operator name this variant comes from.
    pub fn onnx_name(&self) -> &'static str {
        match self {
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Pow => "Pow",
            Op::Mod { .. } => "Mod",
            Op::Equal => "Equal",
            Op::Where => "Where",
            Op::Sum => "Sum",
            Op::Relu => "Relu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Erf => "Erf",
            Op::Sqrt => "Sqrt",
            Op::Gelu { .. } => "Gelu",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::HardSwish => "HardSwish",
            Op::Clip { .. } | Op::ClipBounds { .. } => "Clip",
            Op::Cast { .. } => "Cast",
            Op::Conv { .. } => "Conv",
            Op::ConvTranspose { .. } => "ConvTranspose",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::AveragePool { .. } => "AveragePool",
            Op::MaxPool { .. } | Op::MaxPoolIndices { .. } => "MaxPool",
            Op::MaxUnpool => "MaxUnpool",
            Op::Dft(_) => "DFT",
            Op::Col2Im(_) => "Col2Im",
            Op::DeformConv { .. } => "DeformConv",
            Op::RoiAlign(_) => "RoiAlign",
            Op::Stft(_) => "STFT",
            Op::NllLoss {
                log_softmax: false, ..
            } => "NegativeLogLikelihoodLoss",
            Op::NllLoss { .. } => "SoftmaxCrossEntropyLoss",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Lrn { .. } => "LRN",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Gather { .. } => "Gather",
            Op::Transpose { .. } => "Transpose",
            Op::Expand { .. } => "Expand",
            Op::Pad { .. } => "Pad",
            Op::Resize { .. } => "Resize",
            Op::Reduce { kind, .. } => kind.onnx_name(),
            Op::ArgReduce { max: true, .. } => "ArgMax",
            Op::ArgReduce { max: false, .. } => "ArgMin",
            Op::Math { f } => f.onnx_name(),
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Elu { .. } => "Elu",
            Op::Selu { .. } => "Selu",
            Op::Celu { .. } => "Celu",
            Op::Swish { .. } => "Swish",
            Op::Attention { .. } => "Attention",
            Op::BitCast { .. } => "BitCast",
            Op::TensorScatter { .. } => "TensorScatter",
            Op::LpNormalization { .. } => "LpNormalization",
            Op::RotaryEmbedding { .. } => "RotaryEmbedding",
            Op::SwiGlu { .. } => "SwiGLU",
            Op::RmsNormalization { .. } => "RMSNormalization",
            Op::ThresholdedRelu { .. } => "ThresholdedRelu",
            Op::Shrink { .. } => "Shrink",
            Op::IsInf { .. } => "IsInf",
            Op::PRelu => "PRelu",
            Op::Max => "Max",
            Op::Min => "Min",
            Op::Mean => "Mean",
            Op::Compare { cmp } => cmp.onnx_name(),
            Op::Logic { op } => op.onnx_name(),
            Op::Not => "Not",
            Op::Bitwise { op } => op.onnx_name(),
            Op::BitwiseNot => "BitwiseNot",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::LogSoftmax { .. } => "LogSoftmax",
            Op::Tile { .. } => "Tile",
            Op::BlockShuffle { to_space: true, .. } => "DepthToSpace",
            Op::BlockShuffle {
                to_space: false, ..
            } => "SpaceToDepth",
            Op::InstanceNormalization { .. } => "InstanceNormalization",
            Op::GatherElements { .. } => "GatherElements",
            Op::ScatterElements { .. } => "ScatterElements",
            Op::ScatterND { .. } => "ScatterND",
            Op::OneHot { .. } => "OneHot",
            Op::TopK { .. } => "TopK",
            Op::CumSum { product: false, .. } => "CumSum",
            Op::CumSum { product: true, .. } => "CumProd",
            Op::Trilu { .. } => "Trilu",
            Op::GatherNd { .. } => "GatherND",
            Op::Hardmax { .. } => "Hardmax",
            Op::MeanVarianceNormalization { .. } => "MeanVarianceNormalization",
            Op::GroupNormalization { .. } => "GroupNormalization",
            Op::LpPool { .. } => "LpPool",
            Op::GridSample { .. } => "GridSample",
            Op::Einsum { .. } => "Einsum",
            Op::ReverseSequence { .. } => "ReverseSequence",
            Op::Det => "Det",
            Op::QuantizeLinear { .. } => "QuantizeLinear",
            Op::DequantizeLinear { .. } => "DequantizeLinear",
            Op::DynamicQuantizeLinear => "DynamicQuantizeLinear",
            Op::MatMulInteger { .. } => "MatMulInteger",
            Op::QLinearMatMul => "QLinearMatMul",
            Op::ConvInteger { .. } => "ConvInteger",
            Op::QLinearConv { .. } => "QLinearConv",
            Op::AffineGrid { .. } => "AffineGrid",
            Op::Recurrent { spec, .. } => match spec.cell {
                crate::kernels::RnnCell::Simple => "RNN",
                crate::kernels::RnnCell::Gru { .. } => "GRU",
                crate::kernels::RnnCell::Lstm { .. } => "LSTM",
            },
            Op::Softmax { .. } => "Softmax",
            Op::LayerNormalization { .. } => "LayerNormalization",
        }
    }

    /// Elementwise ops whose output may reuse the storage of a same-sized input that dies at
    /// this op (the in-place hint given to the memory planner).
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Div
                | Op::Pow
                | Op::Mod { .. }
                | Op::Sum
                | Op::Relu
                | Op::Sigmoid
                | Op::Tanh
                | Op::Erf
                | Op::Sqrt
                | Op::Gelu { .. }
                | Op::HardSigmoid { .. }
                | Op::HardSwish
                | Op::Clip { .. }
                | Op::LeakyRelu { .. }
                | Op::Elu { .. }
                | Op::Selu { .. }
                | Op::Celu { .. }
                | Op::Swish { .. }
                | Op::ThresholdedRelu { .. }
                | Op::Shrink { .. }
                | Op::Not
        ) || matches!(self, Op::Math { f } if !f.to_bool())
    }

    /// Whether the host kernel can write this op's output over an input of element type
    /// `dtype` (same size): the one rule for the planner's share hints and the binder's check.
    /// Elementwise f32 kernels all can; on other types only the elementwise functions
    /// (`Op::Math`) and `Not` have an in-place form.
    pub fn in_place_on(&self, dtype: DType) -> bool {
        self.is_reshape_only()
            || (self.is_elementwise()
                && match self {
                    Op::Math { .. } => {
                        matches!(dtype, DType::F32 | DType::F64 | DType::I32 | DType::I64)
                    }
                    Op::Not => dtype == DType::Bool,
                    _ => dtype == DType::F32,
                })
    }

    /// Ops that only reinterpret the shape (the output bytes equal the input bytes).
    pub fn is_reshape_only(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. }
        )
    }
}
