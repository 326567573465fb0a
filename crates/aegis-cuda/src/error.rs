//! Error model shared by every layer: [`ErrorCategory`] and Layer 1's [`CudaError`].

use std::fmt;
use std::panic::Location;

/// How a caller should react to an error. Every layer's error type reports one through
/// [`Categorized`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCategory {
    /// Retrying the same request later can succeed (out of memory, full queue, not ready).
    Transient,
    /// This request or model can never succeed as given (invalid argument, unsupported op).
    Permanent,
    /// The device or context is unusable (a sticky CUDA error) and must be rebuilt.
    Fatal,
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Fatal => "fatal",
        })
    }
}

/// Implemented by every AegisRT error type so upper layers can decide on retry, reject or
/// rebuild without matching on another layer's variants.
pub trait Categorized {
    /// The category of this error.
    fn category(&self) -> ErrorCategory;
}

/// Where in our code a failing call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSite {
    /// Source file.
    pub file: &'static str,
    /// Line in `file`.
    pub line: u32,
}

impl CallSite {
    /// The caller's location (propagated through `#[track_caller]` functions).
    #[track_caller]
    pub fn here() -> Self {
        let l = Location::caller();
        Self {
            file: l.file(),
            line: l.line(),
        }
    }
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Which kind of injected fault to raise (host backend fault injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InjectedFaultKind {
    /// The item fails; the stream and device stay usable (like a recoverable kernel error).
    Recoverable,
    /// The item fails and poisons the device until it is rebuilt (like CUDA's sticky
    /// `CUDA_ERROR_LAUNCH_FAILED` / `ILLEGAL_ADDRESS`).
    Sticky,
}

/// Layer 1's error. Variants carry the data a caller needs to act; every variant that comes
/// from a call names it and its call site.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    /// An allocation would exceed the device's free memory.
    #[error("{call} at {site}: out of device memory: requested {requested} bytes, {free} free of {capacity}")]
    OutOfMemory {
        /// The API call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
        /// Bytes asked for.
        requested: u64,
        /// Bytes still free on the device when asked.
        free: u64,
        /// Total capacity of the device.
        capacity: u64,
    },
    /// An argument was rejected before anything was enqueued.
    #[error("{call} at {site}: invalid argument: {reason}")]
    InvalidArgument {
        /// The API call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
        /// What was wrong.
        reason: String,
    },
    /// The requested backend or device does not exist in this build or on this machine.
    #[error("{call}: backend {backend} unavailable: {reason}")]
    BackendUnavailable {
        /// The API call that failed.
        call: &'static str,
        /// `"cuda"` or `"host"`.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The operation needs a different backend (e.g. host access to CUDA memory).
    #[error("{call} at {site}: not supported on the {backend} backend")]
    WrongBackend {
        /// The API call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
        /// The backend that cannot do it.
        backend: &'static str,
    },
    /// Queried work has not completed yet.
    #[error("{call} at {site}: not ready")]
    NotReady {
        /// The API call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
    },
    /// Two pieces of work touched overlapping memory at the same time with at least one
    /// writer: on a GPU this is a silent data race (usually a missing event wait).
    #[error("data race on allocation {allocation}: bytes {start}..{end} {mode} by `{label}` while in use by another")]
    RaceDetected {
        /// Allocation id.
        allocation: u64,
        /// First byte of the conflicting access.
        start: usize,
        /// One past the last byte.
        end: usize,
        /// `"read"` or `"written"`.
        mode: &'static str,
        /// Label of the work that attempted the access (`"host"` outside a stream).
        label: String,
    },
    /// Work enqueued on a stream failed; reported at the stream's next synchronise.
    #[error("work `{label}` on stream {stream} failed ({category}): {message}")]
    WorkFailed {
        /// Label of the failed work item.
        label: String,
        /// Stream id.
        stream: u64,
        /// Category of the underlying failure.
        category: ErrorCategory,
        /// The underlying failure.
        message: String,
    },
    /// Work panicked on a stream worker; the worker survived.
    #[error("work `{label}` on stream {stream} panicked: {message}")]
    WorkPanicked {
        /// Label of the failed work item.
        label: String,
        /// Stream id.
        stream: u64,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A fault injected by a test (host backend).
    #[error("injected {kind:?} fault in `{label}` on stream {stream} (item {item})")]
    InjectedFault {
        /// Label of the failed work item.
        label: String,
        /// Stream id.
        stream: u64,
        /// Index of the item on the device (enqueue order).
        item: u64,
        /// Recoverable or sticky.
        kind: InjectedFaultKind,
    },
    /// The device hit a sticky error earlier and is unusable until rebuilt.
    #[error("{call} at {site}: device {device} is poisoned by an earlier fatal error ({cause}); rebuild it")]
    DevicePoisoned {
        /// The API call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
        /// Device ordinal.
        device: u32,
        /// The error that poisoned it.
        cause: String,
    },
    /// A driver call returned an error code.
    #[error("{call} at {site}: driver error {code} ({name})")]
    Driver {
        /// The driver call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
        /// Numeric `CUresult`.
        code: u32,
        /// Symbolic name, or `UNKNOWN` for a code this build does not know.
        name: &'static str,
        /// Category from NVIDIA's documentation of the code.
        category: ErrorCategory,
    },
    /// A worker thread could not be spawned.
    #[error("{call} at {site}: could not spawn a stream worker: {reason}")]
    Spawn {
        /// The API call that failed.
        call: &'static str,
        /// Where it was called from.
        site: CallSite,
        /// The OS error.
        reason: String,
    },
}

impl CudaError {
    /// An [`CudaError::InvalidArgument`] naming the caller's call site.
    #[track_caller]
    pub fn invalid(call: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            call,
            site: CallSite::here(),
            reason: reason.into(),
        }
    }

    /// Wraps an upper layer's failure inside enqueued work, keeping its category.
    pub fn work_failed(label: &str, stream: u64, err: &(impl Categorized + fmt::Display)) -> Self {
        Self::WorkFailed {
            label: label.to_owned(),
            stream,
            category: err.category(),
            message: err.to_string(),
        }
    }
}

impl Categorized for CudaError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::OutOfMemory { .. } | Self::NotReady { .. } => ErrorCategory::Transient,
            Self::InvalidArgument { .. }
            | Self::BackendUnavailable { .. }
            | Self::WrongBackend { .. }
            | Self::RaceDetected { .. }
            | Self::WorkPanicked { .. } => ErrorCategory::Permanent,
            Self::WorkFailed { category, .. } | Self::Driver { category, .. } => *category,
            Self::InjectedFault { kind, .. } => match kind {
                InjectedFaultKind::Recoverable => ErrorCategory::Transient,
                InjectedFaultKind::Sticky => ErrorCategory::Fatal,
            },
            Self::DevicePoisoned { .. } => ErrorCategory::Fatal,
            Self::Spawn { .. } => ErrorCategory::Transient,
        }
    }
}

/// Layer 1 result.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;
