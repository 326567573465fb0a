//! # aegis-context — Layer 5 of AegisRT: execution contexts and the runtime facade
//!
//! One [`ExecutionContext`] per loaded model isolates it from the others: its own resource
//! budget ([`ResourceBudget`]: device memory bytes and streams), its own state machine
//! ([`ContextState`]), its own [`FaultBoundary`] and its own metrics. The [`Runtime`] is what
//! users start from: a builder (device, streams, policy, queue capacity), `load` with a
//! budget (admission: weights + arena + workspace must fit, else the exact shortfall),
//! synchronous `infer` and asynchronous `submit` through aegis-sched's [`aegis_sched::Scheduler`]
//! (contexts implement its `Workload` trait, serialised per model by [`SerialPerModel`]),
//! `health`, `rebuild` after a lost device, and [`fit_check`]: does a set of models fit a
//! device, before anything is loaded, and how much arena sharing would save.
//!
//! ## What this crate owns
//! Contexts and their lifecycle, budgets, fault records and their propagation, the runtime
//! facade, and the device rebuild path.
//!
//! ## What it must never do
//! - Let a fault in one context change another's state, except a **Fatal** fault
//!   (`aegis_cuda::ErrorCategory::Fatal`, a sticky device error): then every context on the
//!   device goes Faulted at once ([`DeviceHealth::poison`]) and new work is refused with
//!   [`ContextError::DevicePoisoned`] until [`Runtime::rebuild`].
//! - Run two inferences of one model at once (one arena per prepared model), or run work on
//!   a context that is not Ready.
//! - Spawn scheduling threads (only aegis-sched does), hold `unsafe`, or import concurrency
//!   primitives from anywhere but `aegis_cuda::sync`.
//! - Panic on bad input: zero or impossible budgets, unknown models, illegal transitions and
//!   underflowing releases are typed [`ContextError`]s.
//!
//! ## Invariants
//! - A context's state changes only through [`state::transition`] (Created -> Ready ->
//!   Running -> Ready | Faulted; Faulted -> Ready by reset; any -> Destroyed on drop), by
//!   compare-and-swap; a run's end is accepted only with that run's ticket.
//! - A budget's use never exceeds its limit, at any instant (one CAS per reservation; a loom
//!   model checks it), and a release never underflows (it is refused instead).
//! - Every request submitted through the runtime ends with exactly one outcome: outputs or a
//!   typed error (the scheduler's guarantee, kept across `rebuild`, which drains first).
//! - Dropping a context releases its memory budget and device memory exactly once.
#![warn(missing_docs)]

mod backend;
pub mod budget;
mod context;
mod error;
pub mod fault;
mod fit;
mod metrics;
mod runtime;
pub mod state;
mod workload;

pub use backend::{Backend, DeviceGeneration};
pub use budget::{BudgetLimits, MemoryGrant, ResourceBudget, StreamGrant};
pub use context::{admit, options_for, requirement_for, ExecutionContext, MAX_STREAMS};
pub use error::{ContextError, Resource};
pub use fault::{DeviceHealth, FaultBoundary, FaultRecord};
pub use fit::{fit_check, FitEntry, FitModel, FitReport};
pub use metrics::MetricsSnapshot;
pub use runtime::{
    model_id_for_path, zero_inputs, HealthReport, InferenceHandle, InferenceOutcome, ModelHandle,
    ModelHealth, ModelSource, PolicyKind, RebuildReport, Runtime, RuntimeBuilder,
};
pub use state::{ContextEvent, ContextState};
pub use workload::{ContextWorkload, SerialPerModel};

/// Renders a byte count with a binary unit (`1.50 MiB`).
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Parses a byte size: `123`, `512KiB`, `1.5MiB`, `2GiB`, `100MB` (SI), `4k`.
///
/// # Errors
/// A message naming the bad text.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 512MiB, 2GiB, 1000000)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => return Err(format!("`{text}`: unknown size unit `{other}`")),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 << 20), "3.00 MiB");
    }
}
