//! The CUDA C sources of the op kernels (`crates/aegis-exec/cuda/*.cu`, embedded), their
//! process-wide NVRTC cache, and the loaded kernel handles of one device.

use std::sync::OnceLock;

use aegis_cuda::nvrtc::{default_cache_dir, KernelCache, Nvrtc, NvrtcError};
use aegis_cuda::{Device, Kernel};

/// Every op kernel source, by file name (each compiles alone with NVRTC).
pub const KERNEL_SOURCES: [(&str, &str); 6] = [
    ("elementwise.cu", include_str!("../../cuda/elementwise.cu")),
    ("norm.cu", include_str!("../../cuda/norm.cu")),
    ("pool.cu", include_str!("../../cuda/pool.cu")),
    ("gemm.cu", include_str!("../../cuda/gemm.cu")),
    ("conv.cu", include_str!("../../cuda/conv.cu")),
    ("resize.cu", include_str!("../../cuda/resize.cu")),
];

/// One kernel entry point. The discriminant indexes [`CudaKernels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum K {
    UnaryF32,
    BinarySameF32,
    BinaryF32,
    BinaryI64,
    BinaryI32,
    PowMixed,
    EqualAny,
    WhereAny,
    CastAny,
    StridedCopy,
    GatherAny,
    PadF32,
    SoftmaxRows,
    SoftmaxStrided,
    ReduceRows,
    ReduceGeneral,
    BatchNorm,
    LayerNorm,
    Lrn,
    Pool,
    Sgemm,
    Sgemv,
    ConvIgemm,
    ConvIgemm128,
    ConvSplitReduce,
    ConvDepthwise,
    ConvTranspose,
    ResizeNearest,
    ResizeLinear,
}

/// (kernel, source file, entry name), in discriminant order.
pub(crate) const TABLE: [(K, &str, &str); 29] = [
    (K::UnaryF32, "elementwise.cu", "unary_f32"),
    (K::BinarySameF32, "elementwise.cu", "binary_same_f32"),
    (K::BinaryF32, "elementwise.cu", "binary_f32"),
    (K::BinaryI64, "elementwise.cu", "binary_i64"),
    (K::BinaryI32, "elementwise.cu", "binary_i32"),
    (K::PowMixed, "elementwise.cu", "pow_mixed"),
    (K::EqualAny, "elementwise.cu", "equal_any"),
    (K::WhereAny, "elementwise.cu", "where_any"),
    (K::CastAny, "elementwise.cu", "cast_any"),
    (K::StridedCopy, "elementwise.cu", "strided_copy"),
    (K::GatherAny, "elementwise.cu", "gather_any"),
    (K::PadF32, "elementwise.cu", "pad_f32"),
    (K::SoftmaxRows, "norm.cu", "softmax_rows_f32"),
    (K::SoftmaxStrided, "norm.cu", "softmax_strided_f32"),
    (K::ReduceRows, "norm.cu", "reduce_rows_f32"),
    (K::ReduceGeneral, "norm.cu", "reduce_general_f32"),
    (K::BatchNorm, "norm.cu", "batchnorm_f32"),
    (K::LayerNorm, "norm.cu", "layernorm_f32"),
    (K::Lrn, "norm.cu", "lrn_f32"),
    (K::Pool, "pool.cu", "pool_f32"),
    (K::Sgemm, "gemm.cu", "sgemm_f32"),
    (K::Sgemv, "gemm.cu", "sgemv_f32"),
    (K::ConvIgemm, "conv.cu", "conv_igemm_f32"),
    (K::ConvIgemm128, "conv.cu", "conv_igemm128_f32"),
    (K::ConvSplitReduce, "conv.cu", "conv_splitk_reduce_f32"),
    (K::ConvDepthwise, "conv.cu", "conv_depthwise_f32"),
    (K::ConvTranspose, "conv.cu", "conv_transpose_f32"),
    (K::ResizeNearest, "resize.cu", "resize_nearest_f32"),
    (K::ResizeLinear, "resize.cu", "resize_linear_f32"),
];

/// NVRTC options for every op kernel (fast-math off: results follow the host's IEEE math).
pub const NVRTC_OPTIONS: [&str; 1] = ["--std=c++17"];

/// The process-wide cache (NVRTC loaded once; PTX compiled once per source and capability,
/// and kept on disk under [`default_cache_dir`]).
pub(crate) fn cache() -> Result<&'static KernelCache, NvrtcError> {
    static CACHE: OnceLock<Result<KernelCache, NvrtcError>> = OnceLock::new();
    CACHE
        .get_or_init(|| Nvrtc::load().map(|n| KernelCache::new(n, default_cache_dir())))
        .as_ref()
        .map_err(Clone::clone)
}

/// Every op kernel loaded on one device.
#[derive(Debug, Clone)]
pub(crate) struct CudaKernels {
    kernels: Vec<Kernel>,
}

impl CudaKernels {
    /// Compiles (or fetches from the cache) and loads every source on `device`.
    pub(crate) fn load(device: &Device) -> Result<Self, NvrtcError> {
        let cache = cache()?;
        let mut modules = Vec::with_capacity(KERNEL_SOURCES.len());
        for (file, src) in KERNEL_SOURCES {
            modules.push((file, cache.module(device, file, src, &NVRTC_OPTIONS)?));
        }
        let mut kernels = Vec::with_capacity(TABLE.len());
        for (i, (k, file, entry)) in TABLE.iter().enumerate() {
            debug_assert_eq!(*k as usize, i);
            let module = modules
                .iter()
                .find(|(f, _)| f == file)
                .map(|(_, m)| m)
                .ok_or_else(|| {
                    NvrtcError::Cuda(aegis_cuda::CudaError::invalid(
                        "CudaKernels::load",
                        format!("no source file {file}"),
                    ))
                })?;
            kernels.push(module.kernel(entry)?);
        }
        Ok(Self { kernels })
    }

    pub(crate) fn get(&self, k: K) -> &Kernel {
        &self.kernels[k as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_discriminant_order_and_names_exist() {
        for (i, (k, file, entry)) in TABLE.iter().enumerate() {
            assert_eq!(*k as usize, i, "{entry}");
            let src = KERNEL_SOURCES
                .iter()
                .find(|(f, _)| f == file)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            assert!(
                src.contains(&format!("{entry}(")),
                "{entry} is not in {file}"
            );
        }
    }
}
