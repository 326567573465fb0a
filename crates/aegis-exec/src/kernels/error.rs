//! The kernels' error type.

use aegis_cuda::{Categorized, CudaError, ErrorCategory};

/// Why a kernel refused its arguments. Kernels validate every length, shape and attribute
/// they rely on and return one of these instead of panicking; all variants are
/// [`ErrorCategory::Permanent`]: the same call can never succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KernelError {
    /// A buffer's length disagrees with the shape it was described with.
    #[error("{op}: {what} has {actual} elements, expected {expected}")]
    LengthMismatch {
        /// The operator.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// Elements implied by the shape arguments.
        expected: usize,
        /// Elements supplied.
        actual: usize,
    },
    /// Shapes that cannot be broadcast together (numpy rules) or otherwise disagree.
    #[error("{op}: incompatible shapes {a:?} and {b:?}")]
    ShapeMismatch {
        /// The operator.
        op: &'static str,
        /// First shape.
        a: Vec<usize>,
        /// Second shape.
        b: Vec<usize>,
    },
    /// An attribute (or shape-like input) value the operator does not accept.
    #[error("{op}: invalid {attr}: {reason}")]
    InvalidAttribute {
        /// The operator.
        op: &'static str,
        /// The attribute.
        attr: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A data-dependent index (Gather) outside its axis.
    #[error("{op}: index {index} out of range for an axis of size {size}")]
    IndexOutOfRange {
        /// The operator.
        op: &'static str,
        /// The offending index.
        index: i64,
        /// The axis size.
        size: usize,
    },
    /// Integer division or modulo by zero.
    #[error("{op}: integer division by zero")]
    DivisionByZero {
        /// The operator.
        op: &'static str,
    },
    /// A caller-provided scratch buffer is smaller than the kernel's stated requirement.
    #[error("{op}: scratch has {actual} elements, needs {required}")]
    ScratchTooSmall {
        /// The operator.
        op: &'static str,
        /// Elements required (see the operator's `*_scratch_len`).
        required: usize,
        /// Elements supplied.
        actual: usize,
    },
    /// The host GEMM refused its arguments (a kernel bug: shapes are validated first).
    #[error("{op}: host gemm failed: {source}")]
    Gemm {
        /// The operator.
        op: &'static str,
        /// The layer 1 error.
        source: CudaError,
    },
}

impl Categorized for KernelError {
    fn category(&self) -> ErrorCategory {
        ErrorCategory::Permanent
    }
}

/// Shorthand result type for kernels.
pub type KernelResult<T> = Result<T, KernelError>;

/// Checks `buf_len == expected`.
pub(crate) fn check_len(
    op: &'static str,
    what: &'static str,
    actual: usize,
    expected: usize,
) -> KernelResult<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            op,
            what,
            expected,
            actual,
        })
    }
}

/// Product of a shape's dimensions, refusing overflow.
pub(crate) fn numel(op: &'static str, shape: &[usize]) -> KernelResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::InvalidAttribute {
            op,
            attr: "shape",
            reason: format!("{shape:?} overflows usize"),
        })
}

pub(crate) fn invalid(
    op: &'static str,
    attr: &'static str,
    reason: impl Into<String>,
) -> KernelError {
    KernelError::InvalidAttribute {
        op,
        attr,
        reason: reason.into(),
    }
}
