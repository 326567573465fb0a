//! A memory-aware choice among the valid orders of the steps.
//!
//! The graph layer owns the real step order; this module only proposes a permutation that
//! respects every data dependency (a step runs after the steps producing what it reads)
//! and every explicit extra dependency, together with the plan under that order.
//!
//! Method: greedy list scheduling. Among the ready steps, pick the one that keeps live
//! bytes lowest, with a few scoring variants; each resulting order is planned with the
//! full [`MemoryPlanner`] and the smallest peak wins, the given order included (so the
//! result is never worse than not reordering). Every tie breaks on the original step
//! index, so the result is deterministic.

use crate::error::MemoryError;
use crate::lifetime::{Lifetime, LifetimeAnalyser, TensorUsage};
use crate::planner::{align_up, lower_bound, AllocationPlan, MemoryPlanner};

/// "Step `after` must run after step `before`", beyond the data dependencies (e.g. a
/// side effect or a stream ordering the graph layer needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepDependency {
    /// The step that must run first.
    pub before: usize,
    /// The step that must run after it.
    pub after: usize,
}

/// A proposed step order and its plan.
#[derive(Debug, Clone)]
pub struct Reordering {
    /// `order[k]` is the original step that runs at position `k`.
    pub order: Vec<usize>,
    /// Lifetimes under the new order (steps are positions in `order`).
    pub lifetimes: Vec<Lifetime>,
    /// The plan for `lifetimes`.
    pub plan: AllocationPlan,
    /// Which ordering won (`"given"` when the original order is best).
    pub heuristic: String,
}

impl Reordering {
    /// True when the order is the identity (no step moved).
    pub fn is_identity(&self) -> bool {
        self.order.iter().enumerate().all(|(k, &s)| k == s)
    }
}

/// Scoring variants for the list scheduler. Each yields one candidate order.
#[derive(Debug, Clone, Copy)]
enum Score {
    /// Smallest growth of the peak so far, then least live after the step.
    PeakThenAfter,
    /// Smallest growth of the peak so far, then the original order.
    PeakThenIndex,
    /// Least bytes alive while the step runs, then after it.
    DuringThenAfter,
    /// Smallest net change (produced - freed), then least bytes during.
    Net,
    /// Least live after the step, then least during.
    After,
}

impl Score {
    const ALL: [Score; 5] = [
        Self::PeakThenAfter,
        Self::PeakThenIndex,
        Self::DuringThenAfter,
        Self::Net,
        Self::After,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::PeakThenAfter => "list/peak-after",
            Self::PeakThenIndex => "list/peak-index",
            Self::DuringThenAfter => "list/during-after",
            Self::Net => "list/net",
            Self::After => "list/after",
        }
    }
}

/// Searches for a valid order of the `num_steps` steps that lowers the planned peak, and
/// plans `tensors` under it with `planner`.
///
/// # Errors
/// Everything [`LifetimeAnalyser::analyse`] and [`MemoryPlanner::plan`] reject, a
/// dependency naming a step outside the order, or dependencies with a cycle.
pub fn plan_with_reordering(
    planner: &MemoryPlanner,
    num_steps: usize,
    tensors: &[TensorUsage],
    extra: &[StepDependency],
) -> Result<Reordering, MemoryError> {
    // Validates ids and steps once, up front.
    let given_lifetimes = LifetimeAnalyser::analyse(num_steps, tensors)?;
    let graph = StepGraph::new(planner.alignment(), num_steps, tensors, extra)?;

    let mut candidates: Vec<(Vec<usize>, String)> = Vec::new();
    if graph.is_valid_order(&(0..num_steps).collect::<Vec<_>>()) {
        candidates.push(((0..num_steps).collect(), "given".to_owned()));
    }
    for score in Score::ALL {
        let order = graph.list_schedule(score)?;
        if !candidates.iter().any(|(o, _)| *o == order) {
            candidates.push((order, score.name().to_owned()));
        }
    }

    let mut best: Option<Reordering> = None;
    for (order, heuristic) in candidates {
        let lifetimes = if heuristic == "given" {
            given_lifetimes.clone()
        } else {
            LifetimeAnalyser::analyse(num_steps, &remap(tensors, &order))?
        };
        // Without sharing nothing beats the bound, so an order whose bound is no better
        // than the best peak so far cannot win: skip planning it.
        if let Some(b) = &best {
            if !planner.has_share_hints()
                && lower_bound(planner.alignment(), &lifetimes)? >= b.plan.peak_bytes
            {
                continue;
            }
        }
        let plan = planner.plan(&lifetimes)?;
        if best
            .as_ref()
            .is_none_or(|b| plan.peak_bytes < b.plan.peak_bytes)
        {
            best = Some(Reordering {
                order,
                lifetimes,
                plan,
                heuristic,
            });
        }
    }
    if let Some(b) = &best {
        tracing::debug!(
            steps = num_steps,
            peak = b.plan.peak_bytes,
            heuristic = %b.heuristic,
            "memory-aware step order"
        );
    }
    // Kahn's algorithm always yields an order when there is no cycle, so at least one
    // candidate exists; an empty step list still has the (empty) given order.
    best.ok_or(MemoryError::CyclicDependencies {
        unscheduled: num_steps,
    })
}

/// The tensors with their steps renamed to positions in `order`.
fn remap(tensors: &[TensorUsage], order: &[usize]) -> Vec<TensorUsage> {
    let mut pos = vec![0usize; order.len()];
    for (k, &s) in order.iter().enumerate() {
        pos[s] = k;
    }
    tensors
        .iter()
        .map(|t| TensorUsage {
            producer: t.producer.map(|p| pos[p]),
            consumers: t.consumers.iter().map(|&c| pos[c]).collect(),
            ..t.clone()
        })
        .collect()
}

/// Steps, their dependencies and the planned tensors each touches.
struct StepGraph {
    /// Successors of each step (deduplicated).
    succ: Vec<Vec<usize>>,
    /// Number of distinct predecessors.
    indegree: Vec<usize>,
    /// Planned tensors each step writes.
    produces: Vec<Vec<usize>>,
    /// Planned tensors each step reads (deduplicated).
    reads: Vec<Vec<usize>>,
    /// Aligned size of each tensor (0 for constants, which are not planned).
    size: Vec<u64>,
    /// Distinct consumer steps per tensor.
    readers: Vec<usize>,
    /// Alive until the end whatever the order.
    pinned: Vec<bool>,
    /// Bytes alive before the first step (graph inputs).
    initial_live: u64,
}

impl StepGraph {
    fn new(
        alignment: u64,
        num_steps: usize,
        tensors: &[TensorUsage],
        extra: &[StepDependency],
    ) -> Result<Self, MemoryError> {
        let mut edges: Vec<(usize, usize)> = Vec::new();
        let mut produces = vec![Vec::new(); num_steps];
        let mut reads = vec![Vec::new(); num_steps];
        let mut size = Vec::with_capacity(tensors.len());
        let mut readers = Vec::with_capacity(tensors.len());
        let mut pinned = Vec::with_capacity(tensors.len());
        let mut initial_live = 0u64;
        // Checked once here so every live-byte sum below (a partial sum) cannot overflow.
        let mut total = 0u64;
        for (i, t) in tensors.iter().enumerate() {
            let mut cons = t.consumers.clone();
            cons.sort_unstable();
            cons.dedup();
            if let Some(p) = t.producer {
                edges.extend(cons.iter().map(|&c| (p, c)));
            }
            let s = if t.is_constant {
                0
            } else {
                align_up(t.size_bytes, alignment).ok_or(MemoryError::SizeOverflow {
                    what: "aligned tensor size",
                })?
            };
            total = total
                .checked_add(s)
                .ok_or(MemoryError::SizeOverflow { what: "total size" })?;
            size.push(s);
            readers.push(cons.len());
            pinned.push(t.is_graph_output);
            if !t.is_constant {
                match t.producer {
                    Some(p) => produces[p].push(i),
                    None => initial_live += s,
                }
                for &c in &cons {
                    reads[c].push(i);
                }
            }
        }
        for d in extra {
            if d.before >= num_steps || d.after >= num_steps {
                return Err(MemoryError::DependencyOutOfRange {
                    before: d.before,
                    after: d.after,
                    num_steps,
                });
            }
            edges.push((d.before, d.after));
        }
        edges.sort_unstable();
        edges.dedup();
        let mut succ = vec![Vec::new(); num_steps];
        let mut indegree = vec![0usize; num_steps];
        for (a, b) in edges {
            succ[a].push(b);
            indegree[b] += 1;
        }
        Ok(Self {
            succ,
            indegree,
            produces,
            reads,
            size,
            readers,
            pinned,
            initial_live,
        })
    }

    fn is_valid_order(&self, order: &[usize]) -> bool {
        let mut pos = vec![0usize; order.len()];
        for (k, &s) in order.iter().enumerate() {
            pos[s] = k;
        }
        self.succ
            .iter()
            .enumerate()
            .all(|(a, bs)| bs.iter().all(|&b| pos[a] < pos[b]))
    }

    /// One list schedule: repeatedly run the ready step with the best score.
    fn list_schedule(&self, score: Score) -> Result<Vec<usize>, MemoryError> {
        let n = self.succ.len();
        let mut indegree = self.indegree.clone();
        let mut remaining = self.readers.clone();
        let mut ready: Vec<usize> = (0..n).filter(|&s| indegree[s] == 0).collect();
        let mut order = Vec::with_capacity(n);
        let mut live = self.initial_live;
        let mut peak = live;
        while !ready.is_empty() {
            let mut best: Option<(usize, (u64, i128, u64, usize))> = None;
            for (slot, &s) in ready.iter().enumerate() {
                let (produce, free) = self.effect(s, &remaining);
                let during = live + produce;
                let after = during - free;
                let net = i128::from(produce) - i128::from(free);
                let key = match score {
                    Score::PeakThenAfter => (during.max(peak), 0, after, s),
                    Score::PeakThenIndex => (during.max(peak), 0, 0, s),
                    Score::DuringThenAfter => (during, 0, after, s),
                    Score::Net => (0, net, during, s),
                    Score::After => (after, 0, during, s),
                };
                if best.is_none_or(|(_, k)| key < k) {
                    best = Some((slot, key));
                }
            }
            let Some((slot, _)) = best else { break };
            let s = ready.swap_remove(slot);
            let (produce, free) = self.effect(s, &remaining);
            peak = peak.max(live + produce);
            live = live + produce - free;
            for &t in &self.reads[s] {
                remaining[t] -= 1;
            }
            order.push(s);
            for &b in &self.succ[s] {
                indegree[b] -= 1;
                if indegree[b] == 0 {
                    ready.push(b);
                }
            }
        }
        if order.len() != n {
            return Err(MemoryError::CyclicDependencies {
                unscheduled: n - order.len(),
            });
        }
        Ok(order)
    }

    /// Bytes `s` adds while it runs and bytes freed right after it.
    fn effect(&self, s: usize, remaining: &[usize]) -> (u64, u64) {
        let produce: u64 = self.produces[s].iter().map(|&t| self.size[t]).sum();
        let dead_outputs: u64 = self.produces[s]
            .iter()
            .filter(|&&t| self.readers[t] == 0 && !self.pinned[t])
            .map(|&t| self.size[t])
            .sum();
        let dead_inputs: u64 = self.reads[s]
            .iter()
            .filter(|&&t| remaining[t] == 1 && !self.pinned[t])
            .map(|&t| self.size[t])
            .sum();
        (produce, dead_outputs + dead_inputs)
    }
}
