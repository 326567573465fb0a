//! # aegis-memory — Layer 2 of AegisRT
//!
//! Owns device memory above Layer 1's raw allocations, in two halves:
//!
//! - **Run-time memory.** [`DeviceMemoryPool`] hands out [`DeviceBuffer`]s from
//!   [`aegis_cuda::DeviceMemory`] under a hard byte budget. The budget is accounted
//!   lock-free ([`BudgetCounter`], one compare-and-swap per reservation) with counters for
//!   bytes in use, peak and allocations. An [`Arena`] is one buffer per prepared model that
//!   hands out each tensor's bytes as an [`aegis_cuda::DeviceSlice`] at its planned offset.
//! - **Planning, as plain data.** [`LifetimeAnalyser`] turns producer/consumer steps
//!   ([`TensorUsage`]) into [`Lifetime`] intervals; [`MemoryPlanner`] packs them into one
//!   arena ([`AllocationPlan`]) with several greedy strategies, in-place [`ShareHint`]s,
//!   [`NestHint`]s (a part stored inside its whole, e.g. a concatenation's) and a local
//!   search, reporting the peak against the lower bound; [`plan_with_reordering`]
//!   picks a valid step order that lowers the peak further, for the graph layer to adopt.
//!
//! ## What this crate must never do
//! - See graphs, operators or models: the planner takes ids, sizes and step numbers only.
//! - Retry, compact, evict or wait when the budget is full: an allocation that does not fit
//!   fails at once with [`MemoryError::BudgetExceeded`] (Transient) and the caller decides.
//! - Allocate while a model runs: memory is taken when a model is prepared (an [`Arena`]),
//!   and running only takes views of it.
//! - Let hash order or timing change a plan: the same input always gives the same plan.
//! - Panic on bad input: invalid lifetimes, duplicate ids and overflowing sizes are typed
//!   [`MemoryError`]s (Permanent).
//!
//! ## Invariants
//! - A pool's bytes in use never exceed its budget, at any instant, under any interleaving
//!   (checked by a loom model and a many-thread stress test).
//! - A [`DeviceBuffer`]'s bytes return to its pool's budget exactly once, when it drops.
//! - Every [`AllocationPlan`] this crate returns passes [`AllocationPlan::validate`]: no two
//!   tensors alive at one step share a byte (except an applied in-place pair, which shares
//!   one offset, and an applied nest, whose part sits at its offset inside its whole), every
//!   offset is aligned, and `peak_bytes` is the highest end.
//! - `lower_bound_bytes <= peak_bytes <= ` the greedy-by-size peak (TensorFlow Lite's
//!   choice), since that strategy is always among those tried.
//! - Concurrency primitives come from [`aegis_cuda::sync`], so loom can model them.
#![warn(missing_docs)]

mod arena;
mod error;
mod lifetime;
mod planner;
mod pool;
mod reorder;

pub use arena::Arena;
pub use error::{MemoryError, PlanViolation};
pub use lifetime::{Lifetime, LifetimeAnalyser, TensorUsage};
pub use planner::{
    lower_bound, AllocationPlan, Fit, MemoryPlanner, NestHint, PlacementOrder, ShareHint,
    DEFAULT_ALIGNMENT, DEFAULT_SEARCH_EFFORT,
};
pub use pool::{BudgetCounter, DeviceBuffer, DeviceMemoryPool, PoolStats, Reservation};
pub use reorder::{plan_with_reordering, Reordering, StepDependency};
