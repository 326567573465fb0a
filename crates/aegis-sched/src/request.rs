//! Requests, their identities and their single completion.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use aegis_cuda::sync::Arc;

use crate::error::{CancelReason, RequestError};
use crate::primitives::CompletionCell;
use crate::workload::Workload;

/// Scheduler-unique request id, assigned at acceptance in strictly increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Request priority: a **higher** number is more urgent (unlike CUDA stream priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Priority(pub u8);

impl Priority {
    /// Background work.
    pub const LOW: Self = Self(0);
    /// The default.
    pub const NORMAL: Self = Self(4);
    /// Interactive work; by default it is steered to the pool's highest-priority streams.
    pub const HIGH: Self = Self(8);
    /// The most urgent level.
    pub const MAX: Self = Self(u8::MAX);
}

/// Who a request is for; fairness policies share device time across tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TenantId(pub u32);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// One inference to schedule: the prepared model, its inputs and the scheduling metadata.
pub struct Request<I, O> {
    /// The prepared model. (`std`'s `Arc`, not the sync facade: an immutable shared object,
    /// and loom's `Arc` cannot hold a trait object.)
    pub workload: std::sync::Arc<dyn Workload<I, O>>,
    /// Its inputs (moved into `Workload::enqueue` at dispatch).
    pub inputs: I,
    /// Priority (higher is more urgent).
    pub priority: Priority,
    /// Absolute deadline for the outputs, if any.
    pub deadline: Option<Instant>,
    /// Tenant.
    pub tenant: TenantId,
}

impl<I, O> Request<I, O> {
    /// A request with normal priority, no deadline, tenant 0.
    pub fn new(workload: std::sync::Arc<dyn Workload<I, O>>, inputs: I) -> Self {
        Self {
            workload,
            inputs,
            priority: Priority::NORMAL,
            deadline: None,
            tenant: TenantId::default(),
        }
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets a deadline relative to now.
    pub fn with_deadline_in(self, within: Duration) -> Self {
        let now = Instant::now();
        self.with_deadline(now.checked_add(within).unwrap_or(now))
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }
}

impl<I: 'static, O: 'static> fmt::Debug for Request<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("model", &self.workload.model_id())
            .field("priority", &self.priority)
            .field("deadline", &self.deadline)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A successful request: its outputs and how it went.
#[derive(Debug)]
pub struct Completed<O> {
    /// The request.
    pub id: RequestId,
    /// The workload's outputs.
    pub outputs: O,
    /// Pool index of the stream it ran on.
    pub stream: usize,
    /// Time from submission to dispatch.
    pub queued_for: Duration,
    /// Device time measured between events recorded around the work.
    pub device_time: Duration,
    /// When the scheduler delivered the outcome.
    pub finished_at: Instant,
    /// The request's deadline.
    pub deadline: Option<Instant>,
}

impl<O> Completed<O> {
    /// True when there was no deadline or it was met.
    pub fn met_deadline(&self) -> bool {
        self.deadline.is_none_or(|d| self.finished_at <= d)
    }
}

/// What every accepted request ends with, exactly once.
pub type Outcome<O> = Result<Completed<O>, RequestError>;

/// A callback receiving a request's outcome. It runs on the scheduling thread: keep it short.
pub type Callback<O> = Box<dyn FnOnce(Outcome<O>) + Send>;

/// A handle to wait on a request's outcome.
pub struct RequestHandle<O> {
    id: RequestId,
    cell: Arc<CompletionCell<Outcome<O>>>,
}

impl<O> fmt::Debug for RequestHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHandle")
            .field("id", &self.id)
            .field("cell", &self.cell)
            .finish()
    }
}

impl<O> RequestHandle<O> {
    pub(crate) fn new(id: RequestId, cell: Arc<CompletionCell<Outcome<O>>>) -> Self {
        Self { id, cell }
    }

    /// The request's id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// True once the outcome is available.
    pub fn is_done(&self) -> bool {
        self.cell.is_complete()
    }

    /// Blocks until the outcome is available.
    pub fn wait(self) -> Outcome<O> {
        match self.cell.wait() {
            Some(o) => o,
            // Unreachable by construction (the handle owns the only take), but a typed error
            // beats a panic.
            None => Err(RequestError::Cancelled {
                id: self.id,
                reason: CancelReason::Abandoned,
            }),
        }
    }

    /// Waits at most `timeout`; gives the handle back if the outcome is not there yet.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Outcome<O>, Self> {
        match self.cell.wait_timeout(timeout) {
            Some(o) => Ok(o),
            None => Err(self),
        }
    }

    /// Takes the outcome if it is available, else gives the handle back.
    pub fn try_get(self) -> Result<Outcome<O>, Self> {
        match self.cell.try_take() {
            Some(o) => Ok(o),
            None => Err(self),
        }
    }
}

enum Notify<O> {
    Handle(Arc<CompletionCell<Outcome<O>>>),
    Callback(Callback<O>),
}

/// The scheduler's side of a request's completion. `complete` consumes it, so a request
/// completes at most once by construction; dropping it uncompleted delivers
/// `Cancelled { Abandoned }`, so none is left hanging either.
pub(crate) struct Completer<O> {
    id: RequestId,
    notify: Option<Notify<O>>,
}

impl<O> Completer<O> {
    pub(crate) fn from_cell(id: RequestId, cell: Arc<CompletionCell<Outcome<O>>>) -> Self {
        Self {
            id,
            notify: Some(Notify::Handle(cell)),
        }
    }

    pub(crate) fn callback(id: RequestId, f: Callback<O>) -> Self {
        Self {
            id,
            notify: Some(Notify::Callback(f)),
        }
    }

    pub(crate) fn complete(mut self, outcome: Outcome<O>) {
        self.deliver(outcome);
    }

    fn deliver(&mut self, outcome: Outcome<O>) {
        match self.notify.take() {
            Some(Notify::Handle(cell)) => {
                let refused = cell.complete(outcome).is_err();
                if refused {
                    tracing::error!(target: "aegis_sched", request = self.id.0, "request completed twice; second outcome dropped");
                }
            }
            Some(Notify::Callback(f)) => {
                // A panicking callback must not take the scheduling loop down with it.
                let panicked = catch_unwind(AssertUnwindSafe(move || f(outcome))).is_err();
                if panicked {
                    tracing::error!(target: "aegis_sched", request = self.id.0, "completion callback panicked");
                }
            }
            None => {}
        }
    }
}

impl<O> Drop for Completer<O> {
    fn drop(&mut self) {
        if self.notify.is_none() {
            return;
        }
        tracing::error!(target: "aegis_sched", request = self.id.0, "request dropped without an outcome: completing it as abandoned");
        if std::thread::panicking() {
            // Running a user callback while unwinding risks a double panic (abort): only
            // handles, which run no user code, are completed here.
            if let Some(Notify::Handle(cell)) = self.notify.take() {
                let _ = cell.complete(Err(RequestError::Cancelled {
                    id: self.id,
                    reason: CancelReason::Abandoned,
                }));
            }
            return;
        }
        let id = self.id;
        self.deliver(Err(RequestError::Cancelled {
            id,
            reason: CancelReason::Abandoned,
        }));
    }
}
