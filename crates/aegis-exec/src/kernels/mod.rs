//! Host (CPU) f32 kernels for Layer 3: pure functions over slices with explicit shapes and
//! attributes, written to the ONNX operator specification (opsets 7-28; the loader rewrites
//! earlier opsets' nodes into those forms). They know nothing about graphs; the executor
//! glues them to the graph's op enum.
//!
//! # Conventions (the contract every function follows)
//! - Tensors are dense row-major slices; image tensors are NCHW (NCW, NCDHW for 1-D/3-D).
//!   Shapes are `&[usize]`; a scalar has shape `[]` and one element.
//! - Attributes arrive with ONNX defaults filled in by the caller (documented per type).
//!   **Axes are non-negative**: the caller resolves negative ONNX axes by adding the rank.
//!   Exceptions that take raw ONNX values and normalise them here: [`slice_params`] (negative
//!   and out-of-range starts/ends, negative axes), [`gather`] (negative indices).
//! - `auto_pad` is resolved by the caller with [`auto_pad`] into explicit begin/end pads.
//! - The caller allocates outputs with the right length (the `*_output_*` helpers compute
//!   shapes); every kernel checks lengths and returns [`KernelError`] (all
//!   [`aegis_cuda::ErrorCategory::Permanent`]) instead of panicking.
//! - bool tensors are `u8` (0/1). Integer ops wrap on overflow; integer division/modulo by
//!   zero is an error.
//! - `threads` (heavy kernels): 1 = run on the caller; n > 1 = the work is cut into pieces that
//!   the caller and up to n - 1 helpers of aegis-cuda's host compute team claim
//!   (`aegis_cuda::host_parallel_for`).
//!   **Results are bit-identical for every `threads`**:
//!   work is split only along output elements, never inside a reduction, and GEMM work is cut
//!   into tiles fixed by the shapes alone, each one single-threaded
//!   [`aegis_cuda::host_sgemm`] call (the `gemm` crate; `unsafe` lives in aegis-cuda's `raw`).
//! - Reshape, Flatten, Squeeze, Unsqueeze and Identity are metadata only; [`copy`] is there
//!   for when buffers cannot alias.
//!
//! # Public API
//! Elementwise (numpy multidirectional broadcasting; fast paths for same shape, scalar and
//! channel/row broadcast, a strided odometer otherwise):
//! - `broadcast_shape(a, b) -> Result<Vec<usize>>`, `broadcast_shapes(&[&[usize]])`
//! - `binary_f32(op: BinaryOp, a, a_shape, b, b_shape, out, threads)`,
//!   `binary_f32_inplace(op, out, out_shape, b, b_shape, b_first, threads)`, `binary_i64`,
//!   `binary_i32`, `binary_i8`, `binary_u8`; `BinaryOp::{Add, Sub, Mul, Div, Pow, Mod { fmod }, Max, Min}`
//! - `compare<T: PartialOrd>(op: CompareOp, a, a_shape, b, b_shape, out: &mut [u8], threads)`;
//!   `CompareOp::{Equal, Less, LessOrEqual, Greater, GreaterOrEqual}`
//! - `where_select<T>(cond: &[u8], cond_shape, x, x_shape, y, y_shape, out, threads)`
//! - `variadic_f32(op: VariadicOp::{Sum, Mean, Max, Min}, inputs: &[(&[f32], &[usize])], out, threads)`
//! - `expand<T>(x, x_shape, out, out_shape, threads)`
//! - generic engine: `broadcast_binary(op_name, a, a_shape, b, b_shape, out, threads, f)`,
//!   `broadcast_assign(op_name, out, out_shape, b, b_shape, threads, f)` (in place),
//!   `broadcast_ternary(op_name, a, .., b, .., c, .., out, threads, f)`
//! - `unary_f32(op: UnaryOp, x, out, threads)`, `unary_f32_inplace(op, data, threads)`;
//!   `UnaryOp::{Relu, Sigmoid, Tanh, Erf, Sqrt, Gelu(GeluApprox::{None, Tanh}),
//!   HardSigmoid { alpha, beta }, HardSwish, Silu, Mish, Clip { min, max }, LeakyRelu { alpha }, Neg, Abs,
//!   Exp, Log, Reciprocal, Floor, Ceil, Round, Identity}`
//! - `cast(src: CastSrc, dst: CastDst)` between every element type, narrow ones included
//!   (`CastDst::Narrow(ty, NarrowMode { saturate, round }, bytes)`)
//! - `Narrow`: the 8-bit floats, E2M1 and 4-/2-bit integers, one byte per element:
//!   `decode`, `encode(v, mode)`, `table()`; `pack` / `unpack` for ONNX's sub-byte layout
//!
//! Convolution and matrix products:
//! - `ConvAttrs { kernel, strides, dilations, pads_begin, pads_end, group }`, `ConvAttrs::new(kernel)`
//! - `auto_pad(AutoPad, input, kernel, stride, dilation) -> (begin, end)`
//! - `conv_output_spatial(input_spatial, &ConvAttrs) -> Result<Vec<usize>>`
//! - `PreparedConv::new(w, w_shape, bias: Option<&[f32]>, ConvAttrs)` (at load time),
//!   `PreparedConv::new_shared(SharedWeights, ..)` (keeps an `Arc` of the filter, no copy),
//!   `.with_activation(UnaryOp)` (fused, after bias), `.output_shape(x_shape)`,
//!   `.scratch_len(x_shape, threads)`, `.run(x, x_shape, out, scratch, threads)`;
//!   `conv_scratch_len(&PreparedConv, x_shape, threads)`, `.prepare_input(x_shape)` (once,
//!   at prepare: packs the filter where that shape runs the channel-vectorised kernel),
//!   `.packed_len()`; paths: depthwise direct (`group == C_in == C_out`; planes of up to
//!   28x28 that keep their size at stride 1 on the output plane itself; stride 2 on even
//!   widths up to 56x56 from even and odd columns; under AVX-512, stride-2 3x3 with output
//!   rows of 16 or more straight from the input rows), channel-vectorised
//!   direct (small planes), direct stride-1 on a flat grid (wide planes), pointwise (1x1,
//!   stride 1, no pads: a direct register-blocked kernel for short reductions, else GEMM on
//!   the input), im2col + GEMM otherwise (the direct kernel on the tile for short
//!   reductions); 1-D, 2-D and 3-D.
//! - `conv(x, x_shape, w, w_shape, bias, &ConvAttrs, out, threads)` (one-shot, allocates)
//! - `ConvTransposeAttrs { conv: ConvAttrs, output_padding }`,
//!   `conv_transpose_output_spatial(input_spatial, &attrs)`,
//!   `conv_transpose(x, x_shape, w, w_shape, bias, &attrs, out, threads)`
//! - `GemmAttrs { alpha, beta, trans_a, trans_b }` (Default = ONNX defaults),
//!   `gemm(a, a_shape, b, b_shape, c: Option<(&[f32], &[usize])>, &GemmAttrs, out, threads)`
//! - `matmul_output_shape(a_shape, b_shape)`, `matmul(a, a_shape, b, b_shape, out, threads)`,
//!   `det(x, x_shape, out)`
//! - `PackedB::new(b, k, n, trans_b, bias)` (a constant right-hand matrix packed once),
//!   `PackedB::run(a, m, out, act, threads)`
//! - `rotary_embedding(&RotarySpec, x, cos, sin, position_ids, out)`: ONNX `RotaryEmbedding`
//! - `attention(&AttentionSpec, &AttentionInputs, AttentionOutputs, threads)`: ONNX
//!   `Attention` (GQA, key/value cache, bool or additive mask, causal, windows, soft cap,
//!   `qk_matmul_output`), per head two GEMMs around a row-wise softmax
//! - `rnn(&RnnSpec { cell: RnnCell::{Simple, Gru, Lstm}, .. }, &RnnInputs, RnnOutputs,
//!   threads)`: the RNN, GRU and LSTM layers
//! - `einsum(inputs, terms, output, sizes, out, threads)` (subscripts resolved to letter ids;
//!   pairwise batched GEMMs)
//!
//! Pooling and normalisation:
//! - `PoolAttrs { kernel, strides, dilations, pads_begin, pads_end, ceil_mode,
//!   count_include_pad }`, `PoolAttrs::new(kernel)`, `pool_output_spatial(input_spatial, &PoolAttrs)`
//! - `pool(PoolKind::{Max, Average}, x, x_shape, &PoolAttrs, out, threads)`,
//!   `lp_pool(x, x_shape, &PoolAttrs, p, out, threads)`
//! - `global_pool(max: bool, x, x_shape, out, threads)`
//! - `lrn(x, x_shape, &LrnAttrs { alpha, beta, bias, size }, out, threads)`
//! - `batch_norm(x, x_shape, scale, bias, mean, var, epsilon, out, threads)`,
//!   `batch_norm_coefficients(scale, bias, mean, var, epsilon) -> (a, b)`,
//!   `channel_affine(x, x_shape, a, b, out, threads)`
//! - `layer_norm(x, x_shape, axis, scale, bias: Option, epsilon, out, threads)`
//! - `layer_norm_stats(x, x_shape, axis, epsilon, mean: Option, inv_std_dev: Option)`
//! - `softmax(SoftmaxKind::{Softmax, LogSoftmax}, x, x_shape, axis, out, threads)` (opset 13+),
//!   `softmax_legacy(kind, x, x_shape, axis, out, threads)` (opset < 13: flatten at `axis`),
//!   `hardmax(x, x_shape, axis, flatten_2d, out)`
//! - `reduce_output_shape(x_shape, axes, keepdims)`,
//!   `reduce(ReduceOp::{Mean, Sum, Max, Min}, x, x_shape, axes, out, threads)`
//! - `reduce_any<T: Reducible>(ReduceAny::{Sum, Mean, Max, Min, Prod, L1, L2, SumSquare, LogSum,
//!   LogSumExp}, x, x_shape, axes, out, threads)` (f32, i32, i64, bool as u8; any axes),
//!   `arg_reduce(max, select_last_index, x, x_shape, axis, out: &mut [i64], threads)`,
//!   `instance_norm(x, x_shape, scale, bias, epsilon, out, threads)`,
//!   `group_norm(x, x_shape, groups, scale, bias, epsilon, out, threads)`,
//!   `mean_variance_norm(x, x_shape, axes, out)`
//! - `map(op_name, x, out, threads, f)`, `map_inplace(data, threads, f)`: scalar maps for the
//!   rarer one-input ops; `softplus`, `sign_f32`
//!
//! Data movement (generic over the element type):
//! - `copy(x, out)`, `concat(inputs: &[(&[T], &[usize])], axis, out, threads)`,
//!   `split(x, x_shape, axis, sizes, outs: &mut [&mut [T]])`
//! - `slice_params(shape, starts: &[i64], ends: &[i64], axes: Option<&[i64]>,
//!   steps: Option<&[i64]>) -> Vec<SliceAxis { start, step, len }>`,
//!   `slice(x, x_shape, &params, out)`
//! - `transpose(x, x_shape, perm, out, threads)`, `tile(x, x_shape, repeats, out, threads)`,
//!   `block_shuffle(to_space, crd, blocksize, x, x_shape, out, threads)` (DepthToSpace /
//!   SpaceToDepth)
//! - `gather(data, data_shape, indices: &[i64 | i32], indices_shape, axis, out)`
//! - indexing: `gather_elements`, `scatter_elements` / `scatter_nd` (with
//!   `ScatterReduction::{None, Add, Mul, Max, Min}`), `gather_nd`, `one_hot`, `top_k`,
//!   `reverse_sequence`,
//!   `cumsum`, `trilu`
//! - `pad(x, x_shape, pads_begin: &[i64], pads_end: &[i64], PadMode::{Constant(v), Reflect,
//!   Edge, Wrap}, out)`
//! - `resize(x, x_shape, out_shape, scales, ResizeMode::{Nearest(NearestMode), Linear},
//!   CoordTransform, out, threads)`; `NearestMode::{RoundPreferFloor, RoundPreferCeil,
//!   Floor, Ceil}`, `CoordTransform::{HalfPixel, HalfPixelSymmetric, PytorchHalfPixel,
//!   AlignCorners, Asymmetric, TfHalfPixelForNearest}`
//! - `affine_grid(theta, n, spatial, align_corners, out)`,
//!   `grid_sample(x, x_shape, grid, grid_shape, GridMode::{Nearest, Linear, Cubic},
//!   GridPadding::{Zeros, Border, Reflection}, align_corners, out, threads)`
//! - `resize_filtered(x, x_shape, out_shape, scales, &FilteredResize { filter:
//!   ResizeFilter::{Linear, Cubic { a }}, coord: FilteredCoord::{Transform(_),
//!   TfCropAndResize { roi, extrapolation_value }}, antialias, exclude_outside }, out, threads)`
//!
//! Quantized (u8/i8 with f32 scales; exact i32 sums; `QElem` is u8, i8 or i32):
//! - `quantize_linear(x, shape, scale, zero_point, QuantLayout::{Tensor, Axis(a), Blocked {
//!   axis, block }}, out, threads)`, `dequantize_linear(..)`,
//!   `dynamic_quantize_linear(x, y, scale, zero_point, threads)`;
//!   `quantize_narrow(.., ty, saturate, out, threads)`, `dequantize_narrow(x, ty, ..)` for the
//!   narrow types
//! - `matmul_integer(a, a_shape, b, b_shape, a_zp, b_zp, out, threads)`,
//!   `qlinear_matmul(.., Requant { a_scale, b_scale, y_scale, y_zero_point }, out, threads)`
//! - `conv_integer(x, x_shape, x_zp, w, w_shape, w_zp, &ConvAttrs, out, out_shape, threads)`,
//!   `qlinear_conv(.., bias, &ConvAttrs, Requant, out, out_shape, threads)` (direct loops:
//!   correct for any geometry, not tuned)
//!
//! Not implemented: MaxPool's `Indices` output; `resize`'s linear mode only filters the
//! trailing spatial axes (`resize_filtered` filters any).

mod attention;
mod broadcast;
mod conv;
mod conv_co;
mod conv_direct;
mod conv_dw_same;
#[cfg(target_arch = "x86_64")]
mod conv_dw_t;
#[cfg(target_arch = "x86_64")]
mod conv_dw_v4;
mod conv_wino;
mod data;
mod deform;
mod einsum;
mod elementwise;
mod error;
mod gemm_packed;
mod grid_sample;
mod igemm;
mod indexing;
mod lanes;
mod loss;
mod map;
mod matmul;
mod narrow;
mod norm;
mod par;
mod pool;
mod pool_plane;
#[cfg(target_arch = "x86_64")]
mod pool_rows;
mod quant;
mod reduce;
mod regions;
mod resize;
mod rnn;
mod rotary;
mod spectral;
#[cfg(target_arch = "x86_64")]
mod v4;

pub use attention::{
    attention, AttentionInputs, AttentionMask, AttentionOutputs, AttentionSpec, QkOutput,
};
pub use broadcast::{
    broadcast_assign, broadcast_binary, broadcast_shape, broadcast_shapes, broadcast_ternary,
};
pub use conv::{
    auto_pad, conv, conv_output_spatial, conv_scratch_len, conv_transpose,
    conv_transpose_output_spatial, AutoPad, ConvAttrs, ConvTransposeAttrs, PreparedConv, Residual,
    SharedWeights,
};
pub use data::{
    block_shuffle, concat, copy, gather, pad, slice, slice_params, split, tensor_scatter, tile,
    transpose, transpose_f32, PadMode, SliceAxis,
};
pub use deform::{deform_conv, DeformArgs, DeformSpec};
pub use einsum::{einsum, EinsumElem};
pub use elementwise::{
    binary_f32, binary_f32_inplace, binary_f64, binary_i16, binary_i32, binary_i64, binary_i8,
    binary_u16, binary_u32, binary_u64, binary_u8, cast, cast_par, compare, expand, unary_f32,
    unary_f32_inplace, variadic_f32, where_select, BinaryOp, CastDst, CastSrc, CompareOp,
    GeluApprox, UnaryOp, VariadicOp,
};
pub use error::{KernelError, KernelResult};
pub use gemm_packed::PackedB;
pub use grid_sample::{affine_grid, grid_sample, GridMode, GridPadding};
pub use igemm::PackedRows;
pub use indexing::{
    cumsum, gather_elements, gather_nd, one_hot, reverse_sequence, scatter_elements, scatter_nd,
    top_k, trilu, Accumulate, ScatterReduction, ScatterValue,
};
pub use loss::{nll_loss, LossArgs, LossReduction};
pub use map::{map, map_inplace, sign_f32, softplus};
pub use matmul::{det, gemm, matmul, matmul_output_shape, GemmAttrs};
pub use narrow::{pack, unpack, E8M0Round, Narrow, NarrowMode};
pub use norm::{
    batch_norm, batch_norm_coefficients, channel_affine, channel_affine_act, hardmax, layer_norm,
    layer_norm_stats, lp_norm, reduce, reduce_output_shape, rms_norm, softmax, softmax_legacy,
    ReduceOp, SoftmaxKind,
};
pub use pool::{
    global_pool, lp_pool, lrn, max_pool_with_indices, max_unpool, pool, pool_output_spatial,
    LrnAttrs, PoolAttrs, PoolKind,
};
pub use quant::{
    conv_integer, dequantize_linear, dequantize_narrow, dynamic_quantize_linear, matmul_integer,
    max_pool_q8, pack_conv_weights, qlinear_conv, qlinear_matmul, quantize_linear, quantize_narrow,
    QElem, QuantLayout, Requant,
};
pub use reduce::{
    arg_reduce, group_norm, instance_norm, mean_variance_norm, reduce_any, ReduceAny, Reducible,
};
pub use regions::{col2im, roi_align, Col2ImSpec, RoiAlignSpec};
#[cfg(feature = "cuda")]
pub(crate) use resize::{nearest_index, original_coord};
pub use resize::{
    resize, resize_filtered, CoordTransform, FilteredCoord, FilteredResize, NearestMode,
    ResizeFilter, ResizeMode,
};
pub use rnn::{rnn, RnnActivation, RnnCell, RnnDirection, RnnInputs, RnnOutputs, RnnSpec};
pub use rotary::{rotary_embedding, RotarySpec};
pub use spectral::{dft, stft, DftSpec, StftSpec};

#[cfg(test)]
mod tests_conv;
#[cfg(test)]
mod tests_data;
#[cfg(test)]
mod tests_elementwise;
#[cfg(test)]
mod tests_pool_norm;
#[cfg(test)]
mod testutil;
