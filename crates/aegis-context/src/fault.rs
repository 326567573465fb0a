//! Fault boundaries: one per context, plus the device-wide record of a fatal fault.

use std::fmt;
use std::time::SystemTime;

use std::sync::Arc;

use aegis_cuda::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
use aegis_cuda::{Categorized, ErrorCategory};

use crate::state::{ContextEvent, StateCell};

/// One recorded fault: what failed, how badly, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FaultRecord {
    /// The model whose work failed (for a device loss: the model that hit the fatal error).
    pub model: String,
    /// What the caller should do about it.
    #[serde(serialize_with = "ser_category")]
    pub category: ErrorCategory,
    /// The error, rendered.
    pub message: String,
    /// Wall-clock time of the fault.
    pub at: SystemTime,
}

fn ser_category<S: serde::Serializer>(c: &ErrorCategory, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.to_string())
}

impl FaultRecord {
    /// A record of `error` for `model`, stamped now.
    pub fn new(model: &str, error: &(impl Categorized + fmt::Display + ?Sized)) -> Self {
        Self {
            model: model.to_owned(),
            category: error.category(),
            message: error.to_string(),
            at: SystemTime::now(),
        }
    }

    /// True for a fatal (sticky) fault: the device is lost.
    pub fn is_fatal(&self) -> bool {
        self.category == ErrorCategory::Fatal
    }
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fault in `{}`: {}",
            self.category, self.model, self.message
        )
    }
}

/// Holds the last fault of one context. Faults never cross boundaries by themselves: only
/// [`DeviceHealth::poison`] writes into other contexts' boundaries.
#[derive(Debug, Default)]
pub struct FaultBoundary {
    has: AtomicBool,
    last: Mutex<Option<FaultRecord>>,
    count: AtomicU64,
}

impl FaultBoundary {
    /// An empty boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while a fault is recorded and not cleared.
    pub fn has_error(&self) -> bool {
        self.has.load(Ordering::Acquire)
    }

    /// The fault recorded last, if not cleared.
    pub fn last_error(&self) -> Option<FaultRecord> {
        lock(&self.last).clone()
    }

    /// Records `fault` (replacing any earlier one).
    pub fn record_error(&self, fault: FaultRecord) {
        let mut g = lock(&self.last);
        *g = Some(fault);
        self.count.fetch_add(1, Ordering::AcqRel);
        self.has.store(true, Ordering::Release);
    }

    /// Clears the fault; returns it.
    pub fn clear_error(&self) -> Option<FaultRecord> {
        let mut g = lock(&self.last);
        self.has.store(false, Ordering::Release);
        g.take()
    }

    /// Faults recorded since creation (cleared ones included).
    pub fn fault_count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

/// What every context on one device shares: its state cell and fault boundary, so a fatal
/// fault can fault them all at once.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: u64,
    pub(crate) model: Arc<str>,
    pub(crate) state: Arc<StateCell>,
    pub(crate) faults: Arc<FaultBoundary>,
}

/// The health of one device generation: a fatal fault on it faults every context registered
/// on it. A rebuilt device gets a fresh `DeviceHealth`.
#[derive(Debug, Default)]
pub struct DeviceHealth {
    poisoned: AtomicBool,
    cause: Mutex<Option<FaultRecord>>,
    members: Mutex<Vec<Member>>,
    next_id: AtomicU64,
}

impl DeviceHealth {
    /// A healthy device with no contexts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fatal fault that lost the device, if any.
    pub fn poisoned(&self) -> Option<FaultRecord> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.cause).clone()
    }

    /// True once a fatal fault was recorded.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Contexts registered now.
    pub fn members(&self) -> usize {
        lock(&self.members).len()
    }

    pub(crate) fn register(
        &self,
        model: Arc<str>,
        state: Arc<StateCell>,
        faults: Arc<FaultBoundary>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        let mut m = lock(&self.members);
        m.push(Member {
            id,
            model,
            state: Arc::clone(&state),
            faults: Arc::clone(&faults),
        });
        // A context joining an already-lost device is lost too (no window where it is Ready).
        if let Some(cause) = self.poisoned() {
            faults.record_error(cause);
            let _ = state.apply(ContextEvent::DeviceLost);
        }
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.members).retain(|m| m.id != id);
    }

    /// Marks the device lost with `cause` (first cause wins) and faults every registered
    /// context: each records the cause and goes Faulted. Returns the models faulted now.
    pub fn poison(&self, cause: FaultRecord) -> Vec<String> {
        let members = lock(&self.members);
        {
            let mut c = lock(&self.cause);
            if c.is_none() {
                *c = Some(cause.clone());
            }
            self.poisoned.store(true, Ordering::Release);
        }
        let mut faulted = Vec::new();
        for m in members.iter() {
            m.faults.record_error(cause.clone());
            if m.state.apply(ContextEvent::DeviceLost).is_ok() {
                faulted.push(m.model.to_string());
            }
            tracing::warn!(
                target: "aegis_context",
                event = "FaultRecorded",
                model = %m.model,
                category = %cause.category,
                caused_by = %cause.model,
                fault = %cause.message,
                "device lost: context faulted"
            );
        }
        faulted
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::state::ContextState;

    #[derive(Debug)]
    struct E(ErrorCategory);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "boom")
        }
    }
    impl Categorized for E {
        fn category(&self) -> ErrorCategory {
            self.0
        }
    }

    #[test]
    fn boundary_records_and_clears() {
        let b = FaultBoundary::new();
        assert!(!b.has_error());
        b.record_error(FaultRecord::new("m", &E(ErrorCategory::Transient)));
        assert!(b.has_error());
        assert_eq!(b.last_error().unwrap().category, ErrorCategory::Transient);
        assert!(b.clear_error().is_some());
        assert!(!b.has_error());
        assert_eq!(b.fault_count(), 1);
    }

    #[test]
    fn poison_faults_every_member_and_late_joiners() {
        let h = DeviceHealth::new();
        let cells: Vec<_> = (0..3)
            .map(|_| {
                let s = Arc::new(StateCell::new(ContextState::Ready));
                let f = Arc::new(FaultBoundary::new());
                h.register(Arc::from("m"), Arc::clone(&s), Arc::clone(&f));
                (s, f)
            })
            .collect();
        let faulted = h.poison(FaultRecord::new("m", &E(ErrorCategory::Fatal)));
        assert_eq!(faulted.len(), 3);
        for (s, f) in &cells {
            assert_eq!(s.get(), ContextState::Faulted);
            assert!(f.last_error().unwrap().is_fatal());
        }
        let s = Arc::new(StateCell::new(ContextState::Ready));
        h.register(
            Arc::from("late"),
            Arc::clone(&s),
            Arc::new(FaultBoundary::new()),
        );
        assert_eq!(s.get(), ContextState::Faulted);
    }
}
