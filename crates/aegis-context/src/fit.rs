//! Capacity planning before anything is loaded: does a set of models fit a device?

use std::fmt;

use aegis_exec::{ExecOptions, ExecutionGraph};
use std::sync::Arc;

use crate::budget::BudgetLimits;
use crate::context::{options_for, requirement_for};
use crate::error::ContextError;
use crate::fmt_bytes;

/// One model to check: its id, graph and (optional) budget.
#[derive(Debug, Clone)]
pub struct FitModel {
    /// The model id.
    pub model: String,
    /// Its graph.
    pub graph: Arc<ExecutionGraph>,
    /// Its budget; without one, only the device total is checked.
    pub limits: Option<BudgetLimits>,
}

/// One model's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FitEntry {
    /// The model id.
    pub model: String,
    /// Weights (raw and kernel-prepared), bytes.
    pub weights_bytes: u64,
    /// Activation arena (the plan's peak), bytes.
    pub arena_bytes: u64,
    /// Kernel workspace, bytes.
    pub workspace_bytes: u64,
    /// Everything together.
    pub total_bytes: u64,
    /// Its memory budget, if given.
    pub budget_bytes: Option<u64>,
    /// False when the total exceeds the budget.
    pub fits_budget: bool,
}

/// The capacity report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FitReport {
    /// Device memory, bytes.
    pub device_memory: u64,
    /// Per model.
    pub models: Vec<FitEntry>,
    /// Sum of the models' totals (each with its own arena).
    pub total_bytes: u64,
    /// True when every model fits its budget and the total fits the device.
    pub fits: bool,
    /// How many models can run at the same time (the scheduler's streams).
    pub concurrency: usize,
    /// Sum of the arenas.
    pub sum_of_arenas: u64,
    /// Arena memory when models that never run at the same time share arenas: the sum of the
    /// `concurrency` largest arenas (with one stream: the largest arena).
    pub shared_arena_bytes: u64,
    /// `sum_of_arenas - shared_arena_bytes`.
    pub arena_saving: u64,
    /// Total with shared arenas.
    pub shared_total_bytes: u64,
    /// True when the shared-arena total fits the device.
    pub fits_shared: bool,
}

/// Computes the report for `models` on a device of `device_memory` bytes, where at most
/// `concurrency` inferences run at once. Pure: nothing is allocated.
///
/// # Errors
/// [`ContextError::Load`] when a graph cannot be planned.
pub fn fit_check(
    device_memory: u64,
    models: &[FitModel],
    base: &ExecOptions,
    concurrency: usize,
) -> Result<FitReport, ContextError> {
    let mut entries = Vec::with_capacity(models.len());
    for m in models {
        let options = match m.limits {
            Some(l) => options_for(base, l),
            None => base.clone(),
        };
        let req = requirement_for(&m.graph, &options)?;
        let total = req.total();
        entries.push(FitEntry {
            model: m.model.clone(),
            weights_bytes: req.weights_bytes + req.prepared_weights_bytes,
            arena_bytes: req.arena_bytes,
            workspace_bytes: req.workspace_bytes,
            total_bytes: total,
            budget_bytes: m.limits.map(|l| l.memory_bytes),
            fits_budget: m.limits.is_none_or(|l| total <= l.memory_bytes),
        });
    }
    let total_bytes = entries.iter().map(|e| e.total_bytes).sum::<u64>();
    let sum_of_arenas = entries.iter().map(|e| e.arena_bytes).sum::<u64>();
    let mut arenas: Vec<u64> = entries.iter().map(|e| e.arena_bytes).collect();
    arenas.sort_unstable_by(|a, b| b.cmp(a));
    let concurrency = concurrency.max(1);
    let shared_arena_bytes = arenas.iter().take(concurrency).sum::<u64>();
    let shared_total_bytes = total_bytes - sum_of_arenas + shared_arena_bytes;
    Ok(FitReport {
        device_memory,
        fits: total_bytes <= device_memory && entries.iter().all(|e| e.fits_budget),
        models: entries,
        total_bytes,
        concurrency,
        sum_of_arenas,
        shared_arena_bytes,
        arena_saving: sum_of_arenas - shared_arena_bytes,
        shared_total_bytes,
        fits_shared: shared_total_bytes <= device_memory,
    })
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl fmt::Display for FitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:>12} {:>12} {:>12} {:>12} {:>12}  fits",
            "model", "weights", "arena", "workspace", "total", "budget"
        )?;
        for e in &self.models {
            writeln!(
                f,
                "{:<28} {:>12} {:>12} {:>12} {:>12} {:>12}  {}",
                e.model,
                fmt_bytes(e.weights_bytes),
                fmt_bytes(e.arena_bytes),
                fmt_bytes(e.workspace_bytes),
                fmt_bytes(e.total_bytes),
                e.budget_bytes.map(fmt_bytes).unwrap_or_else(|| "-".into()),
                if e.fits_budget { "yes" } else { "NO" }
            )?;
        }
        let over = self.models.iter().filter(|e| !e.fits_budget).count();
        writeln!(
            f,
            "total {} of {} device memory: {}{}",
            fmt_bytes(self.total_bytes),
            fmt_bytes(self.device_memory),
            if self.total_bytes <= self.device_memory {
                "fits the device"
            } else {
                "DOES NOT FIT the device"
            },
            if over > 0 {
                format!("; {over} model(s) OVER BUDGET")
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "arena sharing ({} concurrent): sum of arenas {} -> shared {} (saves {}: {:.1}% of the arenas, {:.1}% of the total); total {}: {}",
            self.concurrency,
            fmt_bytes(self.sum_of_arenas),
            fmt_bytes(self.shared_arena_bytes),
            fmt_bytes(self.arena_saving),
            percent(self.arena_saving, self.sum_of_arenas),
            percent(self.arena_saving, self.total_bytes),
            fmt_bytes(self.shared_total_bytes),
            if self.fits_shared {
                "fits"
            } else {
                "does not fit"
            }
        )?;
        write!(
            f,
            "verdict: {}",
            if self.fits { "FITS" } else { "DOES NOT FIT" }
        )
    }
}
