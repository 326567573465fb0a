//! Errors: what a workload reports, why a submission is refused, why a request ends without
//! outputs, and what can go wrong building a scheduler.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant};

use aegis_cuda::{Categorized, CudaError, ErrorCategory};

use crate::request::{Request, RequestId, TenantId};

/// The error a [`crate::Workload`] returns from `enqueue` or from its `Collect` closure.
///
/// A concrete struct rather than a generic `E: Categorized` so the scheduler, its policies and
/// its completions stay free of an error type parameter: the category (what the caller should
/// do) and the message are kept, and the original error stays reachable through
/// [`std::error::Error::source`].
#[derive(Debug)]
pub struct WorkloadError {
    category: ErrorCategory,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl WorkloadError {
    /// An error with a category and a message.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
            source: None,
        }
    }

    /// Wraps a layer's categorized error, keeping its category and the error itself as source.
    pub fn from_error<E>(err: E) -> Self
    where
        E: std::error::Error + Categorized + Send + Sync + 'static,
    {
        Self {
            category: err.category(),
            message: err.to_string(),
            source: Some(Box::new(err)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<CudaError> for WorkloadError {
    fn from(e: CudaError) -> Self {
        Self::from_error(e)
    }
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.category)
    }
}

impl std::error::Error for WorkloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Categorized for WorkloadError {
    fn category(&self) -> ErrorCategory {
        self.category
    }
}

/// Signed time between two instants, in nanoseconds: the slack of a request is
/// `deadline - (earliest possible finish)`; negative means the deadline cannot be met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slack(pub i64);

impl Slack {
    /// `later - earlier`, saturating at the `i64` range (about 292 years).
    pub fn between(later: Instant, earlier: Instant) -> Self {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        if later >= earlier {
            Self(nanos(later - earlier))
        } else {
            Self(-nanos(earlier - later))
        }
    }

    /// True when the deadline cannot be met.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+.3}ms", self.0 as f64 / 1e6)
    }
}

/// Why a policy rejected a queued request before dispatching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Even if it started at the earliest moment a stream can be free for it, the request
    /// would finish after its deadline: it is rejected now instead of run late.
    DeadlineUnmeetable {
        /// The request's deadline.
        deadline: Instant,
        /// The execution-time estimate used (conservative bound, overhead included).
        estimate: Duration,
        /// `deadline - earliest finish`: negative.
        slack: Slack,
    },
    /// A user policy's own reason.
    Custom {
        /// What happened.
        reason: Cow<'static, str>,
        /// What the caller should do.
        category: ErrorCategory,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeadlineUnmeetable {
                estimate, slack, ..
            } => write!(
                f,
                "deadline unmeetable: estimate {:.3}ms, slack {slack}",
                estimate.as_secs_f64() * 1e3
            ),
            Self::Custom { reason, .. } => f.write_str(reason),
        }
    }
}

impl Categorized for RejectReason {
    fn category(&self) -> ErrorCategory {
        match self {
            // The same request (same absolute deadline) can only do worse later.
            Self::DeadlineUnmeetable { .. } => ErrorCategory::Permanent,
            Self::Custom { category, .. } => *category,
        }
    }
}

/// Why a request was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// `stop(StopMode::Cancel)` (or dropping the scheduler) while it was queued.
    Stopped,
    /// `stop(StopMode::Drain)`, but the policy kept waiting with nothing in flight and no
    /// timer, so draining could never finish.
    DrainStalled,
    /// The scheduling loop failed (a policy panicked); see the log.
    SchedulerFailed,
    /// The request was dropped without an outcome (a bug; reported rather than hanging).
    Abandoned,
}

/// Why an accepted request ended without outputs. Every accepted request ends with exactly
/// one [`crate::Outcome`]: its outputs or one of these.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request was cancelled before it was dispatched.
    #[error("request {id} cancelled: {reason:?}")]
    Cancelled {
        /// The request.
        id: RequestId,
        /// Why.
        reason: CancelReason,
    },
    /// The policy rejected the request before dispatch.
    #[error("request {id} rejected by policy `{policy}`: {reason}")]
    Rejected {
        /// The request.
        id: RequestId,
        /// The policy's name.
        policy: &'static str,
        /// Why.
        reason: RejectReason,
    },
    /// The workload failed while enqueuing or collecting.
    #[error("request {id} failed in workload `{model}` on stream {stream}: {error}")]
    Workload {
        /// The request.
        id: RequestId,
        /// The model.
        model: String,
        /// Pool index of the stream it ran on.
        stream: usize,
        /// The failure.
        error: WorkloadError,
    },
    /// The workload panicked in `enqueue` or in its `Collect` closure.
    #[error("request {id}: workload `{model}` panicked: {message}")]
    WorkloadPanicked {
        /// The request.
        id: RequestId,
        /// The model.
        model: String,
        /// The panic message.
        message: String,
    },
    /// The device reported an error for the stream the request ran on.
    #[error("request {id} failed on stream {stream}: {error}")]
    Device {
        /// The request.
        id: RequestId,
        /// Pool index of the stream.
        stream: usize,
        /// The device error.
        error: CudaError,
    },
}

impl RequestError {
    /// The request this error belongs to.
    pub fn id(&self) -> RequestId {
        match self {
            Self::Cancelled { id, .. }
            | Self::Rejected { id, .. }
            | Self::Workload { id, .. }
            | Self::WorkloadPanicked { id, .. }
            | Self::Device { id, .. } => *id,
        }
    }
}

impl Categorized for RequestError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::Cancelled { reason, .. } => match reason {
                CancelReason::Stopped | CancelReason::DrainStalled => ErrorCategory::Transient,
                CancelReason::SchedulerFailed | CancelReason::Abandoned => ErrorCategory::Fatal,
            },
            Self::Rejected { reason, .. } => reason.category(),
            Self::Workload { error, .. } => error.category(),
            Self::WorkloadPanicked { .. } => ErrorCategory::Permanent,
            Self::Device { error, .. } => error.category(),
        }
    }
}

/// Why `submit` refused a request (the request itself comes back in [`SubmitError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitErrorKind {
    /// The bounded queue holds `capacity` requests not yet dispatched: retry later.
    #[error("scheduler queue full ({capacity} requests waiting)")]
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// The deadline was already past at submission.
    #[error("deadline already past at submission (by {late:?})")]
    DeadlineInPast {
        /// How late it was when submitted.
        late: Duration,
    },
    /// The policy declares the tenants it knows (e.g. weights) and this is not one of them.
    #[error("unknown tenant {tenant}")]
    UnknownTenant {
        /// The tenant.
        tenant: TenantId,
    },
    /// The scheduler is stopping or stopped.
    #[error("scheduler stopped")]
    Stopped,
}

impl Categorized for SubmitErrorKind {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::QueueFull { .. } => ErrorCategory::Transient,
            Self::DeadlineInPast { .. } | Self::UnknownTenant { .. } | Self::Stopped => {
                ErrorCategory::Permanent
            }
        }
    }
}

/// A refused submission: why, and the request itself, so no work is silently lost.
pub struct SubmitError<I, O> {
    /// Why it was refused.
    pub kind: SubmitErrorKind,
    /// The request, unchanged.
    pub request: Box<Request<I, O>>,
}

impl<I, O> SubmitError<I, O> {
    /// Takes the request back (e.g. to retry after `QueueFull`).
    pub fn into_request(self) -> Request<I, O> {
        *self.request
    }
}

impl<I: 'static, O: 'static> fmt::Debug for SubmitError<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("kind", &self.kind)
            .field("request", &self.request)
            .finish()
    }
}

impl<I: 'static, O: 'static> fmt::Display for SubmitError<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "submission of model `{}` refused: {}",
            self.request.workload.model_id(),
            self.kind
        )
    }
}

impl<I: 'static, O: 'static> std::error::Error for SubmitError<I, O> {}

impl<I: 'static, O: 'static> Categorized for SubmitError<I, O> {
    fn category(&self) -> ErrorCategory {
        self.kind.category()
    }
}

/// Building or starting a scheduler or a stream pool failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// A configuration value is out of range.
    #[error("invalid scheduler configuration: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// Creating a stream or event failed.
    #[error("device error while building the scheduler: {0}")]
    Device(#[from] CudaError),
    /// `start` was called twice, or after `stop`.
    #[error("scheduler already started or stopped")]
    AlreadyStarted,
    /// The orchestration thread could not be spawned.
    #[error("could not spawn the scheduling thread: {reason}")]
    Spawn {
        /// The OS error.
        reason: String,
    },
}

impl Categorized for SchedError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::InvalidConfig { .. } | Self::AlreadyStarted => ErrorCategory::Permanent,
            Self::Device(e) => e.category(),
            Self::Spawn { .. } => ErrorCategory::Transient,
        }
    }
}
