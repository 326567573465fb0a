//! The bounded, in-memory decision log: every dispatch, rejection, cancellation and refused
//! submission, with the facts it was based on. Tests assert on it; operators read it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aegis_cuda::sync::{lock, Mutex};

use crate::error::{CancelReason, RejectReason, Slack, SubmitErrorKind};
use crate::policy::ModelName;
use crate::request::{Priority, RequestId, TenantId};

/// What was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Dispatched on the stream with this pool index.
    Dispatched {
        /// Pool index of the stream.
        stream: usize,
    },
    /// Rejected by the policy before dispatch.
    Rejected(RejectReason),
    /// Cancelled while queued.
    Cancelled(CancelReason),
    /// Refused at submission (never accepted; no completion follows).
    Refused(SubmitErrorKind),
}

/// One scheduling decision and the facts behind it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Position in the log since the scheduler was built (gaps mean the log wrapped).
    pub seq: u64,
    /// When it was taken.
    pub at: Instant,
    /// The policy's name.
    pub policy: &'static str,
    /// The request (for a refusal: the id it would have had is unknown, so `RequestId(u64::MAX)`).
    pub request: RequestId,
    /// Its model.
    pub model: ModelName,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its priority.
    pub priority: Priority,
    /// Its deadline.
    pub deadline: Option<Instant>,
    /// For dispatches of deadline requests: deadline minus expected finish (estimate bound and
    /// overhead included). For deadline rejections: the (negative) slack.
    pub slack: Option<Slack>,
    /// The execution-time estimate it carried.
    pub estimate: Duration,
    /// How many candidates the policy saw.
    pub candidates: usize,
    /// Requests still queued after the decision.
    pub queue_depth: usize,
    /// What was decided.
    pub action: Action,
}

/// Ring buffer of the latest decisions.
#[derive(Debug)]
pub(crate) struct DecisionLog {
    capacity: usize,
    inner: Mutex<(u64, VecDeque<Decision>)>,
}

impl DecisionLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new((0, VecDeque::with_capacity(capacity.min(4096)))),
        }
    }

    pub(crate) fn push(&self, mut d: Decision) {
        if self.capacity == 0 {
            return;
        }
        let mut g = lock(&self.inner);
        d.seq = g.0;
        g.0 += 1;
        if g.1.len() == self.capacity {
            g.1.pop_front();
        }
        g.1.push_back(d);
    }

    pub(crate) fn snapshot(&self) -> Vec<Decision> {
        lock(&self.inner).1.iter().cloned().collect()
    }
}
