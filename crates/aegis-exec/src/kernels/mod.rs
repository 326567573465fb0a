//! Host kernels (f32).

mod broadcast;
mod conv;
mod data;
mod elementwise;
mod error;
mod matmul;
mod norm;
mod par;
mod pool;
mod resize;

pub use broadcast::{
    broadcast_assign, broadcast_binary, broadcast_shape, broadcast_shapes, broadcast_ternary,
};
pub use conv::{
    auto_pad, conv, conv_output_spatial, conv_scratch_len, conv_transpose,
    conv_transpose_output_spatial, AutoPad, ConvAttrs, ConvTransposeAttrs, PreparedConv,
};
pub use data::{
    concat, copy, gather, pad, slice, slice_params, split, transpose, PadMode, SliceAxis,
};
pub use elementwise::{
    binary_f32, binary_i32, binary_i64, cast, compare, expand, unary_f32, unary_f32_inplace,
    variadic_f32, where_select, BinaryOp, CastDst, CastSrc, CompareOp, GeluApprox, UnaryOp,
    VariadicOp,
};
pub use error::{KernelError, KernelResult};
pub use matmul::{gemm, matmul, matmul_output_shape, GemmAttrs};
pub use norm::{
    batch_norm, batch_norm_coefficients, channel_affine, layer_norm, reduce, reduce_output_shape,
    softmax, softmax_legacy, ReduceOp, SoftmaxKind,
};
pub use pool::{global_pool, lrn, pool, pool_output_spatial, LrnAttrs, PoolAttrs, PoolKind};
pub use resize::{resize, CoordTransform, NearestMode, ResizeMode};

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
