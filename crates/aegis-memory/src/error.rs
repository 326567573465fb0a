//! Layer 2's error type.

use aegis_cuda::{Categorized, CudaError, ErrorCategory};

/// Errors of the memory layer. Variants carry the numbers a caller needs to act on them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MemoryError {
    /// An allocation would take the pool past its byte budget. Nothing was allocated; the
    /// pool does not retry, compact or evict.
    #[error("memory pool budget exceeded: requested {requested} bytes, {available} available of a {budget}-byte budget")]
    BudgetExceeded {
        /// Bytes asked for.
        requested: u64,
        /// Bytes still available in the budget when asked.
        available: u64,
        /// The pool's budget.
        budget: u64,
    },
    /// The device itself had too little free memory (Layer 1's out-of-memory), although the
    /// pool's budget allowed the request.
    #[error("device out of memory: requested {requested} bytes, {free} free of {capacity}")]
    DeviceOutOfMemory {
        /// Bytes asked for.
        requested: u64,
        /// Device bytes free when asked.
        free: u64,
        /// Device capacity.
        capacity: u64,
    },
    /// Any other Layer 1 failure; keeps its category.
    #[error(transparent)]
    Device(CudaError),
    /// Two tensors in one request share an id.
    #[error("tensor id {tensor} appears more than once")]
    DuplicateTensor {
        /// The repeated id.
        tensor: usize,
    },
    /// A tensor id that the plan or request does not know.
    #[error("unknown tensor id {tensor}")]
    UnknownTensor {
        /// The id.
        tensor: usize,
    },
    /// A producer or consumer step outside `0..num_steps`.
    #[error("tensor {tensor}: step {step} outside 0..{num_steps}")]
    StepOutOfRange {
        /// The tensor.
        tensor: usize,
        /// The offending step.
        step: usize,
        /// Number of steps in the order.
        num_steps: usize,
    },
    /// A consumer step that does not come strictly after the producer step.
    #[error(
        "tensor {tensor}: consumer step {consumer} does not come after producer step {producer}"
    )]
    ConsumerNotAfterProducer {
        /// The tensor.
        tensor: usize,
        /// Producer step.
        producer: usize,
        /// Offending consumer step.
        consumer: usize,
    },
    /// A lifetime whose first step is after its last step.
    #[error("tensor {tensor}: lifetime {first_step}..={last_step} is empty")]
    InvalidLifetime {
        /// The tensor.
        tensor: usize,
        /// First step alive.
        first_step: usize,
        /// Last step alive.
        last_step: usize,
    },
    /// A size or offset computation overflowed `u64`.
    #[error("size overflow while computing {what}")]
    SizeOverflow {
        /// Which quantity overflowed.
        what: &'static str,
    },
    /// The alignment is zero or not a power of two.
    #[error("alignment {alignment} is not a power of two")]
    InvalidAlignment {
        /// The rejected alignment.
        alignment: u64,
    },
    /// An explicit dependency names a step outside the order.
    #[error("dependency {before} -> {after} names a step outside 0..{num_steps}")]
    DependencyOutOfRange {
        /// Step that must run first.
        before: usize,
        /// Step that must run after it.
        after: usize,
        /// Number of steps.
        num_steps: usize,
    },
    /// The step dependencies contain a cycle, so no valid order exists.
    #[error("step dependencies contain a cycle ({unscheduled} steps could not be ordered)")]
    CyclicDependencies {
        /// Steps left unscheduled when no step was ready.
        unscheduled: usize,
    },
    /// A view outside an arena.
    #[error("range {offset}+{len} outside an arena of {arena_len} bytes")]
    OutOfArena {
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        len: u64,
        /// Arena size.
        arena_len: u64,
    },
    /// [`crate::AllocationPlan::validate`] found a broken invariant.
    #[error("invalid allocation plan: {0}")]
    InvalidPlan(#[from] PlanViolation),
}

/// What [`crate::AllocationPlan::validate`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanViolation {
    /// Two tensors alive at the same step share bytes (and are not an applied in-place pair
    /// at the same offset).
    #[error("tensors {a} and {b} are both alive at step {step} and overlap in memory")]
    Overlap {
        /// First tensor.
        a: usize,
        /// Second tensor.
        b: usize,
        /// A step at which both are alive.
        step: usize,
    },
    /// An offset is not a multiple of the plan's alignment.
    #[error("tensor {tensor} at offset {offset} is not aligned to {alignment}")]
    Misaligned {
        /// The tensor.
        tensor: usize,
        /// Its offset.
        offset: u64,
        /// The plan's alignment.
        alignment: u64,
    },
    /// `peak_bytes` is not the highest end of any placed tensor.
    #[error("plan claims a peak of {claimed} bytes but its tensors end at {actual}")]
    WrongPeak {
        /// The plan's `peak_bytes`.
        claimed: u64,
        /// max(offset + aligned size).
        actual: u64,
    },
    /// The offsets and tensors tables disagree (length, order or ids).
    #[error("offset table does not match the planned tensors at index {index}")]
    TableMismatch {
        /// First index where they differ.
        index: usize,
    },
    /// An offset + size overflowed.
    #[error("tensor {tensor}: offset + size overflows")]
    Overflow {
        /// The tensor.
        tensor: usize,
    },
    /// The lower bound is above the peak, which is impossible for a correct bound.
    #[error("lower bound {lower_bound} above peak {peak}")]
    BoundAbovePeak {
        /// Claimed lower bound.
        lower_bound: u64,
        /// Claimed peak.
        peak: u64,
    },
}

impl From<CudaError> for MemoryError {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::OutOfMemory {
                requested,
                free,
                capacity,
                ..
            } => Self::DeviceOutOfMemory {
                requested,
                free,
                capacity,
            },
            other => Self::Device(other),
        }
    }
}

impl Categorized for MemoryError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::BudgetExceeded { .. } | Self::DeviceOutOfMemory { .. } => {
                ErrorCategory::Transient
            }
            Self::Device(e) => e.category(),
            Self::DuplicateTensor { .. }
            | Self::UnknownTensor { .. }
            | Self::StepOutOfRange { .. }
            | Self::ConsumerNotAfterProducer { .. }
            | Self::InvalidLifetime { .. }
            | Self::SizeOverflow { .. }
            | Self::InvalidAlignment { .. }
            | Self::DependencyOutOfRange { .. }
            | Self::CyclicDependencies { .. }
            | Self::OutOfArena { .. }
            | Self::InvalidPlan(_) => ErrorCategory::Permanent,
        }
    }
}
