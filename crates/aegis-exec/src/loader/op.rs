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
    /// Element type conversion (float→int truncates toward zero; to bool is `!= 0`).
    /// Inputs: `x`.
    Cast {
        /// Target element type.
        to: DType,
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
    /// Max pooling (the optional `Indices` output is not supported). Inputs: `x`.
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
    /// Mean over `axes` (empty = identity copy). Inputs: `x`.
    ReduceMean {
        /// Reduced axes, sorted.
        axes: Vec<usize>,
        /// Whether reduced axes stay as size 1.
        keepdims: bool,
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
            Op::Clip { .. } => "Clip",
            Op::Cast { .. } => "Cast",
            Op::Conv { .. } => "Conv",
            Op::ConvTranspose { .. } => "ConvTranspose",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::AveragePool { .. } => "AveragePool",
            Op::MaxPool { .. } => "MaxPool",
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
            Op::ReduceMean { .. } => "ReduceMean",
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
        )
    }

    /// Ops that only reinterpret the shape (the output bytes equal the input bytes).
    pub fn is_reshape_only(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. }
        )
    }
}
