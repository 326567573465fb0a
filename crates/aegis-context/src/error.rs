//! The context layer's error type.

use std::fmt;

use aegis_cuda::{Categorized, CudaError, ErrorCategory};
use aegis_exec::ExecError;
use aegis_sched::{RequestError, SchedError, SubmitErrorKind};

use crate::state::{ContextEvent, ContextState};

/// A budgeted resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Resource {
    /// Device memory, in bytes.
    Memory,
    /// Streams.
    Streams,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "device memory",
            Self::Streams => "streams",
        })
    }
}

/// Errors of the context layer. Variants carry the numbers a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A budget limit is zero.
    #[error("invalid budget: {resource} limit is zero")]
    ZeroBudget {
        /// Which limit.
        resource: Resource,
    },
    /// A budget asks for more than the device or runtime has at all.
    #[error("impossible budget: {requested} {resource} requested, the device has {available}")]
    ImpossibleBudget {
        /// Which limit.
        resource: Resource,
        /// The limit asked for.
        requested: u64,
        /// What exists.
        available: u64,
    },
    /// The backend has no model with this id.
    #[error("unknown model `{model}` (known: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownModel {
        /// The id asked for.
        model: String,
        /// The ids the backend knows.
        known: Vec<String>,
    },
    /// A model with this id is already loaded.
    #[error("model `{model}` is already loaded")]
    DuplicateModel {
        /// The id.
        model: String,
    },
    /// Admission: the model's resident memory does not fit its budget.
    #[error(
        "model `{model}` needs {required} bytes (weights {weights} + arena {arena} + workspace {workspace}) \
         but its budget is {budget} bytes: {shortfall} bytes short"
    )]
    InsufficientBudget {
        /// The model.
        model: String,
        /// Weights (raw and kernel-prepared).
        weights: u64,
        /// Activation arena (the plan's peak).
        arena: u64,
        /// Kernel workspace.
        workspace: u64,
        /// Everything together.
        required: u64,
        /// The budget.
        budget: u64,
        /// `required - budget`.
        shortfall: u64,
    },
    /// A reservation does not fit the remaining budget right now.
    #[error("{resource} budget exceeded: requested {requested}, {available} available of {limit}")]
    BudgetExceeded {
        /// Which resource.
        resource: Resource,
        /// Amount asked for.
        requested: u64,
        /// Amount still available.
        available: u64,
        /// The limit.
        limit: u64,
    },
    /// More was released than is held (a caller bug; nothing changed).
    #[error("{resource} release underflow: releasing {released} with only {in_use} in use")]
    ReleaseUnderflow {
        /// Which resource.
        resource: Resource,
        /// Amount released.
        released: u64,
        /// Amount held.
        in_use: u64,
    },
    /// The state machine refuses the event in the current state.
    #[error("model `{model}`: illegal transition {event} in state {from}")]
    InvalidTransition {
        /// The model.
        model: String,
        /// The state.
        from: ContextState,
        /// The event refused.
        event: ContextEvent,
    },
    /// The context cannot take work in its state (busy, faulted, not prepared, destroyed).
    #[error("model `{model}` is {state}{}", fault.as_ref().map(|f| format!(" ({f}); reset it first")).unwrap_or_default())]
    NotReady {
        /// The model.
        model: String,
        /// Its state.
        state: ContextState,
        /// The recorded fault when Faulted.
        fault: Option<String>,
    },
    /// The device was lost to a fatal (sticky) error: all work is refused until the runtime
    /// rebuilds it.
    #[error("model `{model}`: device lost ({cause}); rebuild the runtime")]
    DevicePoisoned {
        /// The model.
        model: String,
        /// The fatal fault.
        cause: String,
    },
    /// Loading or preparing the model failed.
    #[error("{0}")]
    Load(#[source] Box<ExecError>),
    /// The inference failed.
    #[error("model `{model}`: inference failed: {source}")]
    Execution {
        /// The model.
        model: String,
        /// The executor's error.
        #[source]
        source: Box<ExecError>,
    },
    /// Layer 1 failed outside an inference (creating streams, rebuilding the device).
    #[error("device error: {0}")]
    Device(#[source] Box<CudaError>),
    /// Building the scheduler failed.
    #[error("scheduler: {0}")]
    Scheduler(#[source] Box<SchedError>),
    /// The scheduler refused the submission.
    #[error("model `{model}`: submission refused: {kind}")]
    Submit {
        /// The model.
        model: String,
        /// Why.
        kind: SubmitErrorKind,
    },
    /// A scheduled request ended without outputs.
    #[error("model `{model}`: {source}")]
    Request {
        /// The model.
        model: String,
        /// The scheduler's outcome.
        #[source]
        source: Box<RequestError>,
    },
    /// A runtime setting is out of range.
    #[error("invalid runtime configuration: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
}

impl Categorized for ContextError {
    fn category(&self) -> ErrorCategory {
        use ErrorCategory::{Fatal, Permanent, Transient};
        match self {
            Self::ZeroBudget { .. }
            | Self::ImpossibleBudget { .. }
            | Self::UnknownModel { .. }
            | Self::DuplicateModel { .. }
            | Self::InsufficientBudget { .. }
            | Self::ReleaseUnderflow { .. }
            | Self::InvalidTransition { .. }
            | Self::InvalidConfig { .. } => Permanent,
            Self::BudgetExceeded { .. } => Transient,
            Self::NotReady { state, .. } => match state {
                // Busy: try again once the running inference ends.
                ContextState::Running => Transient,
                _ => Permanent,
            },
            Self::DevicePoisoned { .. } => Fatal,
            Self::Load(e) | Self::Execution { source: e, .. } => e.category(),
            Self::Device(e) => e.category(),
            Self::Scheduler(e) => e.category(),
            Self::Submit { kind, .. } => kind.category(),
            Self::Request { source, .. } => source.category(),
        }
    }
}

impl From<CudaError> for ContextError {
    fn from(e: CudaError) -> Self {
        Self::Device(Box::new(e))
    }
}

impl From<SchedError> for ContextError {
    fn from(e: SchedError) -> Self {
        Self::Scheduler(Box::new(e))
    }
}

impl ContextError {
    /// A loader or prepare failure.
    pub fn load(e: ExecError) -> Self {
        Self::Load(Box::new(e))
    }

    /// True when the device was lost (the runtime must be rebuilt).
    pub fn is_fatal(&self) -> bool {
        self.category() == ErrorCategory::Fatal
    }
}
