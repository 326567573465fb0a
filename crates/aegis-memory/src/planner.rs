//! Static offset planning: tensors with known lifetimes packed into one arena.
//!
//! Finding the smallest arena is dynamic storage allocation, which is NP-hard. The planner
//! runs several greedy orders, each with best-fit and first-fit placement, keeps the best,
//! then improves it by a deterministic local search over the placement order. It stops as
//! soon as a plan reaches the lower bound (the most bytes alive at any one step), because
//! nothing can beat that.

use std::fmt;

use crate::error::{MemoryError, PlanViolation};
use crate::lifetime::{check_unique, Lifetime};

/// CUDA's allocation granularity and the planner's default alignment for every offset.
pub const DEFAULT_ALIGNMENT: u64 = 256;

/// Default local-search effort, in units of "one block or conflict visited during a
/// placement pass" (roughly 10-20 ns each). Real models reach their bound long before it is
/// spent; on 10,000 tensors it buys about a dozen passes and keeps planning under 50 ms.
pub const DEFAULT_SEARCH_EFFORT: u64 = 1_000_000;

/// Above this many pairs of tensors alive together, conflicts are not listed (8M pairs is
/// 64 MiB of lists); placement then scans instead.
const MAX_CONFLICT_PAIRS: u64 = 8 << 20;

/// "`output` may reuse the memory of `input`": for an element-wise step whose output can be
/// written over an input that dies at that step (in place). A hint is applied only when it
/// is safe (`input` ends exactly where `output` starts, and neither is already paired that
/// way); the pair then gets the same offset. Hints are a permission, never an obligation:
/// the planner keeps a plan without them when that is smaller.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ShareHint {
    /// The tensor read by the step (dies at it).
    pub input: usize,
    /// The tensor written by the step.
    pub output: usize,
}

/// "`inner` is stored inside `outer`, `offset` bytes from its start": for a concatenation
/// whose parts are written straight into their place in the result, so the copy costs
/// nothing. The caller vouches that `inner`'s bytes *are* `outer`'s bytes there (whatever is
/// written to one is what the other must hold). Applied only when it is consistent: `offset`
/// aligned, `inner` fits inside `outer`, `inner` is in no other outer and overlaps no other
/// inner of the same outer. The members then form one block, alive from the first member's
/// start to the last one's end. A permission, like [`ShareHint`]: the planner keeps a plan
/// without it when that is smaller.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NestHint {
    /// The tensor stored inside `outer` (the first field, so sorted hints are by inner).
    pub inner: usize,
    /// The tensor that contains it.
    pub outer: usize,
    /// Where `inner` starts, in bytes from `outer`'s start.
    pub offset: u64,
}

/// The order in which a greedy pass places tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlacementOrder {
    /// Largest first (TensorFlow Lite's greedy by size); ties: earlier start first.
    Size,
    /// Tensors of the step with the most live bytes first, largest first within a step
    /// (TensorFlow Lite's greedy by breadth).
    Breadth,
    /// Earliest start first, largest first among equal starts (a linear-scan allocator).
    Start,
    /// Longest-lived first.
    Length,
    /// Most conflicting bytes (sizes of the tensors alive alongside) first.
    Conflict,
    /// Largest size × lifetime first.
    Area,
    /// Latest end first.
    End,
}

impl PlacementOrder {
    /// Every order, in the sequence the planner tries them.
    pub const ALL: [PlacementOrder; 7] = [
        Self::Size,
        Self::Breadth,
        Self::Start,
        Self::Length,
        Self::Conflict,
        Self::Area,
        Self::End,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Breadth => "breadth",
            Self::Start => "start",
            Self::Length => "length",
            Self::Conflict => "conflict",
            Self::Area => "area",
            Self::End => "end",
        }
    }
}

/// How a pass chooses among the gaps a tensor fits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fit {
    /// The smallest gap that fits (TensorFlow Lite), else above everything.
    Best,
    /// The lowest gap that fits, else above everything.
    First,
}

impl Fit {
    fn name(self) -> &'static str {
        match self {
            Self::Best => "best-fit",
            Self::First => "first-fit",
        }
    }
}

/// Where every planned tensor lives in one arena, and how good that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationPlan {
    /// `(tensor id, byte offset)`, sorted by id.
    pub offsets: Vec<(usize, u64)>,
    /// The planned lifetimes, sorted by id, index-aligned with `offsets`.
    pub tensors: Vec<Lifetime>,
    /// The share hints the plan applied (each pair sits at one offset), sorted.
    pub shared: Vec<ShareHint>,
    /// The nest hints the plan applied (each inner sits at its outer's offset plus its
    /// own), sorted by inner.
    pub nested: Vec<NestHint>,
    /// Every offset is a multiple of this; every size is rounded up to it.
    pub alignment: u64,
    /// Arena size: the highest offset + aligned size.
    pub peak_bytes: u64,
    /// The most aligned bytes alive at any one step: no plan that keeps every tensor apart
    /// can be smaller. When the plan applied share hints, each applied pair counts once (as
    /// its larger member) at its handover step, since that is the bound for such plans; when
    /// it applied nest hints, the smaller of the plain bound and the most bytes alive at one
    /// step when each group of tensors placed together counts as its block (its extent, over
    /// its members' joint lifetime).
    pub lower_bound_bytes: u64,
    /// Sum of all aligned sizes: the cost of giving every tensor its own buffer.
    pub naive_bytes: u64,
    /// Which strategy produced the plan (e.g. `"start/first-fit+search"`).
    pub strategy: String,
}

impl AllocationPlan {
    /// The offset of `tensor`, if it was planned.
    pub fn offset_of(&self, tensor: usize) -> Option<u64> {
        self.index_of(tensor).map(|i| self.offsets[i].1)
    }

    /// The planned lifetime of `tensor`, if it was planned.
    pub fn lifetime_of(&self, tensor: usize) -> Option<&Lifetime> {
        self.index_of(tensor).map(|i| &self.tensors[i])
    }

    fn index_of(&self, tensor: usize) -> Option<usize> {
        self.offsets.binary_search_by_key(&tensor, |&(t, _)| t).ok()
    }

    /// `peak_bytes / lower_bound_bytes` (1.0 for an empty plan).
    pub fn ratio_to_bound(&self) -> f64 {
        if self.lower_bound_bytes == 0 {
            1.0
        } else {
            self.peak_bytes as f64 / self.lower_bound_bytes as f64
        }
    }

    /// Checks the plan's invariants: tables agree, every offset is aligned, no two tensors
    /// alive at the same step share a byte (except an applied share pair at one offset, and
    /// an applied nest's inner at its place inside its outer, directly or through outers
    /// nested in turn), and `peak_bytes` is exactly the highest end.
    ///
    /// # Errors
    /// [`MemoryError::InvalidPlan`] naming the first violation found.
    pub fn validate(&self) -> Result<(), MemoryError> {
        if self.offsets.len() != self.tensors.len() {
            return Err(PlanViolation::TableMismatch {
                index: self.offsets.len().min(self.tensors.len()),
            }
            .into());
        }
        for (i, (&(id, _), t)) in self.offsets.iter().zip(&self.tensors).enumerate() {
            let sorted = i == 0 || self.offsets[i - 1].0 < id;
            if id != t.tensor || !sorted {
                return Err(PlanViolation::TableMismatch { index: i }.into());
            }
        }
        let alignment = self.alignment.max(1);
        let mut ends = Vec::with_capacity(self.tensors.len());
        let mut actual_peak = 0u64;
        for (&(id, off), t) in self.offsets.iter().zip(&self.tensors) {
            if off % alignment != 0 {
                return Err(PlanViolation::Misaligned {
                    tensor: id,
                    offset: off,
                    alignment,
                }
                .into());
            }
            let end = align_up(t.size_bytes, alignment)
                .and_then(|s| off.checked_add(s))
                .ok_or(PlanViolation::Overflow { tensor: id })?;
            actual_peak = actual_peak.max(end);
            ends.push(end);
        }
        if actual_peak != self.peak_bytes {
            return Err(PlanViolation::WrongPeak {
                claimed: self.peak_bytes,
                actual: actual_peak,
            }
            .into());
        }
        if self.lower_bound_bytes > self.peak_bytes {
            return Err(PlanViolation::BoundAbovePeak {
                lower_bound: self.lower_bound_bytes,
                peak: self.peak_bytes,
            }
            .into());
        }
        // Sweep in start order; everything still active when a tensor starts is alive with it.
        let mut by_start: Vec<usize> = (0..self.tensors.len()).collect();
        by_start.sort_by_key(|&i| (self.tensors[i].first_step, i));
        let mut active: Vec<usize> = Vec::new();
        for &i in &by_start {
            let t = &self.tensors[i];
            active.retain(|&a| self.tensors[a].last_step >= t.first_step);
            for &a in &active {
                let (oa, ob) = (self.offsets[a].1, self.offsets[i].1);
                let disjoint = ends[a] <= ob || ends[i] <= oa || ends[a] == oa || ends[i] == ob;
                if disjoint {
                    continue;
                }
                let ta = &self.tensors[a];
                let paired = (oa == ob
                    && (self.is_shared(ta.tensor, t.tensor)
                        || self.is_shared(t.tensor, ta.tensor)))
                    || self.nested_at(ta.tensor, oa, t.tensor, ob)
                    || self.nested_at(t.tensor, ob, ta.tensor, oa);
                if !paired {
                    return Err(PlanViolation::Overlap {
                        a: ta.tensor.min(t.tensor),
                        b: ta.tensor.max(t.tensor),
                        step: t.first_step,
                    }
                    .into());
                }
            }
            active.push(i);
        }
        Ok(())
    }

    /// Whether `inner` (at `inner_off`) sits inside `outer` (at `outer_off`) through applied
    /// nests, at the offsets they name.
    fn nested_at(&self, outer: usize, outer_off: u64, inner: usize, inner_off: u64) -> bool {
        let mut at = inner;
        let mut rel = 0u64;
        // Each inner has one outer, so the walk is a chain; it cannot be longer than `nested`.
        for _ in 0..self.nested.len() {
            let Ok(k) = self.nested.binary_search_by_key(&at, |h| h.inner) else {
                return false;
            };
            let h = self.nested[k];
            let Some(r) = rel.checked_add(h.offset) else {
                return false;
            };
            rel = r;
            if h.outer == outer {
                return outer_off.checked_add(rel) == Some(inner_off);
            }
            at = h.outer;
        }
        false
    }

    fn is_shared(&self, input: usize, output: usize) -> bool {
        self.shared
            .binary_search(&ShareHint { input, output })
            .is_ok()
    }
}

impl fmt::Display for AllocationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tensors: peak {} B, lower bound {} B ({:.3}x), naive {} B, strategy {}",
            self.tensors.len(),
            self.peak_bytes,
            self.lower_bound_bytes,
            self.ratio_to_bound(),
            self.naive_bytes,
            self.strategy
        )
    }
}

/// Plans offsets for tensors with known lifetimes. See the module docs for the method.
#[derive(Debug, Clone)]
pub struct MemoryPlanner {
    alignment: u64,
    hints: Vec<ShareHint>,
    nests: Vec<NestHint>,
    effort: u64,
}

impl Default for MemoryPlanner {
    fn default() -> Self {
        Self::new(DEFAULT_ALIGNMENT)
    }
}

impl MemoryPlanner {
    /// A planner aligning every offset to `alignment` bytes (a power of two; checked when
    /// planning).
    pub fn new(alignment: u64) -> Self {
        Self {
            alignment,
            hints: Vec::new(),
            nests: Vec::new(),
            effort: DEFAULT_SEARCH_EFFORT,
        }
    }

    /// Allows in-place reuse for these pairs (see [`ShareHint`]).
    pub fn with_share_hints(mut self, hints: impl IntoIterator<Item = ShareHint>) -> Self {
        self.hints = hints.into_iter().collect();
        self
    }

    /// Allows these parts to be stored inside their wholes (see [`NestHint`]).
    pub fn with_nest_hints(mut self, hints: impl IntoIterator<Item = NestHint>) -> Self {
        self.nests = hints.into_iter().collect();
        self
    }

    /// Sets the local-search budget (0 = greedy passes only). The result depends only on
    /// the input and this number, never on timing.
    pub fn with_search_effort(mut self, effort: u64) -> Self {
        self.effort = effort;
        self
    }

    /// True when share or nest hints were given (a plan may then beat the bound of plans
    /// that keep every tensor apart).
    pub fn has_share_hints(&self) -> bool {
        !self.hints.is_empty() || !self.nests.is_empty()
    }

    /// The alignment this planner uses.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Plans `lifetimes`: every greedy order with both fits, then local search from the
    /// best, on up to three block problems: with every applicable hint (shares and nests),
    /// with none, and, when nests applied, with the shares alone. The plan with every hint
    /// is kept when its peak is at most that of the best plan without hints; else the
    /// shares-only plan on the same condition; else the plan without hints. So hints win
    /// ties (in place touches fewer bytes; a shared reshape or a nested Concat part costs
    /// nothing), and a nest is dropped only when it costs bytes against the plain plan,
    /// not because a shares-only plan is smaller still. Deterministic.
    ///
    /// # Errors
    /// Bad alignment, duplicate ids, a lifetime ending before it starts, a hint naming an
    /// unknown tensor, or sizes whose sum overflows `u64`.
    pub fn plan(&self, lifetimes: &[Lifetime]) -> Result<AllocationPlan, MemoryError> {
        let ctx = Context::new(self, lifetimes)?;
        let mut scratch = Scratch::new(lifetimes.len());
        // Hints are permissions: a hinted plan is kept when it is no larger than the best
        // plan without hints; the most hints first (shares and nests, then shares alone),
        // so a smaller shares-only plan does not undo nests that cost no bytes against the
        // plain plan (each dropped nest is a copy per inference).
        let last = ctx.problems.len() - 1;
        let effort = self.effort;
        let Some(full) = ctx.search(last, effort, &mut scratch) else {
            return Ok(ctx.finish(None));
        };
        let best = if last == 0 || full.peak <= ctx.variants[0].bound {
            full
        } else {
            match ctx.search(0, effort, &mut scratch) {
                Some(plain) if plain.peak < full.peak => {
                    let shares = (last >= 2)
                        .then(|| ctx.search(1, effort, &mut scratch))
                        .flatten();
                    match shares {
                        Some(sh) if sh.peak <= plain.peak => sh,
                        _ => plain,
                    }
                }
                _ => full,
            }
        };
        let plan = ctx.finish(Some(best));
        tracing::debug!(
            tensors = plan.tensors.len(),
            peak = plan.peak_bytes,
            lower_bound = plan.lower_bound_bytes,
            strategy = %plan.strategy,
            "memory plan"
        );
        Ok(plan)
    }

    /// Plans `lifetimes` with one greedy pass (respecting the share hints): for comparisons,
    /// e.g. `plan_with(l, PlacementOrder::Size, Fit::Best)` is TensorFlow Lite's greedy by
    /// size.
    ///
    /// # Errors
    /// As [`MemoryPlanner::plan`].
    pub fn plan_with(
        &self,
        lifetimes: &[Lifetime],
        order: PlacementOrder,
        fit: Fit,
    ) -> Result<AllocationPlan, MemoryError> {
        let ctx = Context::new(self, lifetimes)?;
        let Some(problem) = ctx.problems.last() else {
            return Ok(ctx.finish(None));
        };
        let mut scratch = Scratch::new(lifetimes.len());
        let seq = problem.order(order);
        let peak = problem.place(&seq, fit, &mut scratch);
        let cand = Candidate {
            problem: ctx.problems.len() - 1,
            order: seq,
            fit,
            peak,
            offsets: scratch.offsets.clone(),
            name: format!("{}/{}", order.name(), fit.name()),
        };
        Ok(ctx.finish(Some(cand)))
    }
}

/// The most aligned bytes alive at any one step: a lower bound on every plan's peak that
/// keeps all tensors apart.
///
/// # Errors
/// Bad alignment or overflow.
pub fn lower_bound(alignment: u64, lifetimes: &[Lifetime]) -> Result<u64, MemoryError> {
    check_alignment(alignment)?;
    let mut events = Vec::with_capacity(lifetimes.len() * 2);
    for l in lifetimes {
        let s = align_up(l.size_bytes, alignment).ok_or(MemoryError::SizeOverflow {
            what: "aligned tensor size",
        })?;
        events.push((l.first_step, false, s));
        events.push((l.last_step, true, s));
    }
    Ok(max_live(&mut events))
}

/// Max over steps of live bytes. Events are `(step, is_end, bytes)`; a start adds at its
/// step, an end removes after its step. Sums cannot overflow: callers checked the total.
fn max_live(events: &mut [(usize, bool, u64)]) -> u64 {
    events.sort_unstable();
    let (mut live, mut max) = (0u64, 0u64);
    for &(_, is_end, bytes) in events.iter() {
        if is_end {
            live = live.saturating_sub(bytes);
        } else {
            live = live.saturating_add(bytes);
            max = max.max(live);
        }
    }
    max
}

pub(crate) fn align_up(size: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    Some(size.checked_add(mask)? & !mask)
}

fn check_alignment(alignment: u64) -> Result<(), MemoryError> {
    if alignment.is_power_of_two() {
        Ok(())
    } else {
        Err(MemoryError::InvalidAlignment { alignment })
    }
}

/// Validated input plus the block problems to search (without and, if any hint applies,
/// with sharing).
struct Context {
    alignment: u64,
    /// The input sorted by id, so the plan does not depend on the caller's order.
    lifetimes: Vec<Lifetime>,
    aligned: Vec<u64>,
    naive: u64,
    lower_bound: u64,
    problems: Vec<Problem>,
    /// Per problem, the hints it applies and its bound.
    variants: Vec<Variant>,
}

/// What one block problem applies: none (the plain problem), the share hints only, or the
/// share and nest hints; and the bound no placement of its blocks can go below.
struct Variant {
    applied: Vec<ShareHint>,
    nested: Vec<NestHint>,
    /// Each lifetime's offset from its block's start.
    rel: Vec<u64>,
    bound: u64,
}

impl Context {
    fn new(planner: &MemoryPlanner, input: &[Lifetime]) -> Result<Self, MemoryError> {
        let alignment = planner.alignment;
        check_alignment(alignment)?;
        let mut sorted = input.to_vec();
        sorted.sort_unstable_by_key(|l| l.tensor);
        check_unique(sorted.iter().map(|l| l.tensor))?;
        let lifetimes = &sorted[..];
        let mut aligned = Vec::with_capacity(lifetimes.len());
        let mut naive = 0u64;
        for l in lifetimes {
            if l.first_step > l.last_step {
                return Err(MemoryError::InvalidLifetime {
                    tensor: l.tensor,
                    first_step: l.first_step,
                    last_step: l.last_step,
                });
            }
            let s = align_up(l.size_bytes, alignment).ok_or(MemoryError::SizeOverflow {
                what: "aligned tensor size",
            })?;
            naive = naive
                .checked_add(s)
                .ok_or(MemoryError::SizeOverflow { what: "total size" })?;
            aligned.push(s);
        }
        let mut events: Vec<(usize, bool, u64)> = lifetimes
            .iter()
            .zip(&aligned)
            .flat_map(|(l, &s)| [(l.first_step, false, s), (l.last_step, true, s)])
            .collect();
        let lower_bound = max_live(&mut events);

        let mut problems = vec![Problem::new(
            aligned.clone(),
            lifetimes
                .iter()
                .map(|l| (l.first_step, l.last_step))
                .collect(),
            (0..lifetimes.len()).map(|i| vec![i]).collect(),
        )];
        let mut variants = vec![Variant {
            applied: Vec::new(),
            nested: Vec::new(),
            rel: vec![0; lifetimes.len()],
            bound: lower_bound,
        }];
        let full = apply_hints(lifetimes, &planner.hints, &planner.nests, alignment)?;
        // With nests applied, the shares alone are a problem of their own: a plan that
        // cannot place the nests as tightly as the plain plan may still keep the shares
        // (ShuffleNet: its Concats' parts would cost bytes, its reshapes' copies none).
        let shares_only = if full.nested.is_empty() {
            None
        } else {
            Some(apply_hints(lifetimes, &planner.hints, &[], alignment)?)
        };
        for g in shares_only.into_iter().chain([full]) {
            if g.shared.is_empty() && g.nested.is_empty() {
                continue;
            }
            let (problem, variant) = hinted_problem(lifetimes, &aligned, lower_bound, g)?;
            problems.push(problem);
            variants.push(variant);
        }
        Ok(Self {
            alignment,
            lifetimes: sorted,
            aligned,
            naive,
            lower_bound,
            problems,
            variants,
        })
    }

    /// The best greedy candidate of problem `pi`, improved by local search unless it is
    /// at the problem's bound (`None` only if there is no placement order to try).
    fn search(&self, pi: usize, effort: u64, scratch: &mut Scratch) -> Option<Candidate> {
        let problem = &self.problems[pi];
        let bound = self.variants[pi].bound;
        let mut best: Option<Candidate> = None;
        // Dense problems are quadratic per pass: run only the baseline order.
        let orders = if problem.dense {
            &PlacementOrder::ALL[..1]
        } else {
            &PlacementOrder::ALL[..]
        };
        'orders: for &order in orders {
            let seq = problem.order(order);
            for fit in [Fit::Best, Fit::First] {
                let peak = problem.place(&seq, fit, scratch);
                if best.as_ref().is_none_or(|b| peak < b.peak) {
                    best = Some(Candidate {
                        problem: pi,
                        order: seq.clone(),
                        fit,
                        peak,
                        offsets: scratch.offsets.clone(),
                        name: format!("{}/{}", order.name(), fit.name()),
                    });
                }
                if peak <= bound {
                    break 'orders;
                }
            }
        }
        let mut cand = best?;
        if cand.peak > bound && effort > 0 {
            problem.local_search(&mut cand, bound, effort, scratch);
        }
        Some(cand)
    }

    fn finish(&self, best: Option<Candidate>) -> AllocationPlan {
        let mut offsets = vec![0u64; self.lifetimes.len()];
        let mut peak = 0;
        let mut strategy = String::from("empty");
        let mut shared = Vec::new();
        let mut nested = Vec::new();
        let mut lower_bound_bytes = self.lower_bound;
        if let Some(c) = best {
            let problem = &self.problems[c.problem];
            let v = &self.variants[c.problem];
            for (b, members) in problem.members.iter().enumerate() {
                for &m in members {
                    // Problem 0 has one tensor per block; the hinted ones place members at
                    // their offsets inside the block.
                    offsets[m] = c.offsets[b] + v.rel[m];
                }
            }
            peak = c.peak;
            strategy = c.name;
            if c.problem > 0 {
                strategy.push_str(if v.nested.is_empty() {
                    "+share"
                } else {
                    "+share+nest"
                });
                shared = v.applied.clone();
                nested = v.nested.clone();
                lower_bound_bytes = v.bound;
            }
        }
        debug_assert_eq!(
            peak,
            offsets
                .iter()
                .zip(&self.aligned)
                .map(|(o, s)| o + s)
                .max()
                .unwrap_or(0)
        );
        let mut rows: Vec<(usize, u64, Lifetime)> = self
            .lifetimes
            .iter()
            .zip(offsets)
            .map(|(l, o)| (l.tensor, o, *l))
            .collect();
        rows.sort_unstable_by_key(|r| r.0);
        shared.sort_unstable();
        nested.sort_unstable();
        AllocationPlan {
            offsets: rows.iter().map(|r| (r.0, r.1)).collect(),
            tensors: rows.into_iter().map(|r| r.2).collect(),
            shared,
            nested,
            alignment: self.alignment,
            peak_bytes: peak,
            lower_bound_bytes,
            naive_bytes: self.naive,
            strategy,
        }
    }
}

/// The block problem of a grouping (one block per group, as large as its members at their
/// offsets) and its bound: with nests, the most block bytes alive at one step (blocks never
/// share bytes) or the plain bound if smaller; with shares only, the shared bound.
fn hinted_problem(
    lifetimes: &[Lifetime],
    aligned: &[u64],
    lower_bound: u64,
    g: Grouping,
) -> Result<(Problem, Variant), MemoryError> {
    let Grouping {
        shared: applied,
        nested,
        groups,
        rel,
    } = g;
    let mut sizes = Vec::with_capacity(groups.len());
    let mut spans = Vec::with_capacity(groups.len());
    for g in &groups {
        let mut size = 0u64;
        for &i in g {
            let end = rel[i]
                .checked_add(aligned[i])
                .ok_or(MemoryError::SizeOverflow {
                    what: "nested size",
                })?;
            size = size.max(end);
        }
        sizes.push(size);
        let first = g
            .iter()
            .map(|&i| lifetimes[i].first_step)
            .min()
            .unwrap_or(0);
        let last = g.iter().map(|&i| lifetimes[i].last_step).max().unwrap_or(0);
        spans.push((first, last));
    }
    let bound = if nested.is_empty() {
        shared_bound(lifetimes, aligned, &applied, &index_by_id(lifetimes))?
    } else {
        let mut ev: Vec<(usize, bool, u64)> = spans
            .iter()
            .zip(&sizes)
            .flat_map(|(&(f, l), &s)| [(f, false, s), (l, true, s)])
            .collect();
        max_live(&mut ev).min(lower_bound)
    };
    Ok((
        Problem::new(sizes, spans, groups),
        Variant {
            applied,
            nested,
            rel,
            bound,
        },
    ))
}

fn index_by_id(lifetimes: &[Lifetime]) -> Vec<(usize, usize)> {
    let mut idx: Vec<(usize, usize)> = lifetimes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.tensor, i))
        .collect();
    idx.sort_unstable();
    idx
}

fn lookup(idx: &[(usize, usize)], tensor: usize) -> Result<usize, MemoryError> {
    idx.binary_search_by_key(&tensor, |e| e.0)
        .map(|p| idx[p].1)
        .map_err(|_| MemoryError::UnknownTensor { tensor })
}

/// The most bytes alive at one step when each applied pair counts once (as its larger
/// member) at its handover step.
fn shared_bound(
    lifetimes: &[Lifetime],
    aligned: &[u64],
    applied: &[ShareHint],
    idx: &[(usize, usize)],
) -> Result<u64, MemoryError> {
    // (step, phase, delta): phase 0 = adds and the pair discounts, then the maximum is
    // read, phase 1 = removals after the step. Discounts are undone in phase 1.
    let mut ev: Vec<(usize, u8, i128)> =
        Vec::with_capacity(lifetimes.len() * 2 + applied.len() * 2);
    for (l, &s) in lifetimes.iter().zip(aligned) {
        ev.push((l.first_step, 0, i128::from(s)));
        ev.push((l.last_step, 1, -i128::from(s)));
    }
    for h in applied {
        let (i, o) = (lookup(idx, h.input)?, lookup(idx, h.output)?);
        let step = lifetimes[o].first_step;
        let m = i128::from(aligned[i].min(aligned[o]));
        ev.push((step, 0, -m));
        ev.push((step, 1, m));
    }
    ev.sort_unstable();
    let (mut live, mut max) = (0i128, 0i128);
    let mut k = 0;
    while k < ev.len() {
        let step = ev[k].0;
        while k < ev.len() && ev[k].0 == step && ev[k].1 == 0 {
            live += ev[k].2;
            k += 1;
        }
        max = max.max(live);
        while k < ev.len() && ev[k].0 == step {
            live += ev[k].2;
            k += 1;
        }
    }
    u64::try_from(max).map_err(|_| MemoryError::SizeOverflow {
        what: "shared bound",
    })
}

/// The hints a plan can apply and the blocks they make.
struct Grouping {
    shared: Vec<ShareHint>,
    nested: Vec<NestHint>,
    /// Lifetime indices placed together (one block each), sorted.
    groups: Vec<Vec<usize>>,
    /// Each lifetime's offset from its block's start.
    rel: Vec<u64>,
}

/// Applies the consistent nest hints, then the safe share hints (each kind in the given
/// order; an unsafe or conflicting one is skipped), and returns them with the resulting
/// blocks.
fn apply_hints(
    lifetimes: &[Lifetime],
    hints: &[ShareHint],
    nests: &[NestHint],
    alignment: u64,
) -> Result<Grouping, MemoryError> {
    let n = lifetimes.len();
    let idx = index_by_id(lifetimes);
    let mut group: Vec<usize> = (0..n).collect();
    let mut groups: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut rel = vec![0u64; n];
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut nested = Vec::new();
    let size = |i: usize| lifetimes[i].size_bytes;
    for h in nests {
        let (i, o) = (lookup(&idx, h.inner)?, lookup(&idx, h.outer)?);
        let (gi, go) = (group[i], group[o]);
        let fits = h.offset % alignment == 0
            && h.offset.checked_add(size(i)).is_some_and(|e| e <= size(o));
        // `i` is its group's root (it has no outer yet), so its group lies inside its range.
        if i == o || gi == go || parent[i].is_some() || !fits {
            continue;
        }
        let start = rel[o] + h.offset;
        let end = start + size(i);
        // Every member of the outer's block that is not the outer or one of its outers must
        // stay clear of the new range.
        let mut around = vec![o];
        while let Some(p) = parent[*around.last().unwrap_or(&o)] {
            around.push(p);
        }
        let clear = groups[go]
            .iter()
            .all(|&m| around.contains(&m) || rel[m] + size(m) <= start || end <= rel[m]);
        if !clear {
            continue;
        }
        parent[i] = Some(o);
        let moved = std::mem::take(&mut groups[gi]);
        for &m in &moved {
            group[m] = go;
            rel[m] += start;
        }
        groups[go].extend(moved);
        nested.push(*h);
    }
    let mut gives = vec![false; n];
    let mut takes = vec![false; n];
    let mut shared = Vec::new();
    for h in hints {
        let (i, o) = (lookup(&idx, h.input)?, lookup(&idx, h.output)?);
        let step = lifetimes[o].first_step;
        if i == o || gives[i] || takes[o] || lifetimes[i].last_step != step {
            continue;
        }
        // A nest's inner keeps its one place inside its outer: it may take an input's storage
        // only by that input moving there.
        if parent[i].is_some() {
            continue;
        }
        let (gi, go) = (group[i], group[o]);
        if gi == go {
            continue;
        }
        // Only the pair itself may be alive at the handover step; everything else in the
        // input's group must end before it and everything in the output's group that shares
        // the pair's bytes start after.
        let i_ok = groups[gi]
            .iter()
            .all(|&m| m == i || lifetimes[m].last_step < step);
        if !i_ok {
            continue;
        }
        if parent[o].is_none() {
            // (An output moved into a block earlier sits off its start: not movable.)
            let o_ok = rel[o] == 0
                && groups[go]
                    .iter()
                    .all(|&m| m == o || lifetimes[m].first_step > step);
            if !o_ok {
                continue;
            }
            // The output's block moves to the input's offset (the output is its block's root).
            let moved = std::mem::take(&mut groups[go]);
            for &m in &moved {
                group[m] = gi;
                rel[m] = rel[m] - rel[o] + rel[i];
            }
            groups[gi].extend(moved);
        } else {
            // The output is a nest's inner: the input's block moves to the output's place
            // (the input is its block's root, at 0), clear of the output's siblings.
            let (lo, hi) = (rel[o], rel[o] + size(i));
            let o_ok = size(i) <= size(o)
                && groups[go].iter().all(|&m| {
                    m == o
                        || rel[m] + size(m) <= lo
                        || hi <= rel[m]
                        || lifetimes[m].first_step > step
                });
            if !o_ok {
                continue;
            }
            let moved = std::mem::take(&mut groups[gi]);
            for &m in &moved {
                group[m] = go;
                rel[m] += lo;
            }
            groups[go].extend(moved);
        }
        gives[i] = true;
        takes[o] = true;
        shared.push(*h);
    }
    let mut out: Vec<Vec<usize>> = groups.into_iter().filter(|g| !g.is_empty()).collect();
    for g in &mut out {
        g.sort_unstable();
    }
    out.sort_unstable_by_key(|g| g[0]);
    Ok(Grouping {
        shared,
        nested,
        groups: out,
        rel,
    })
}

struct Candidate {
    problem: usize,
    order: Vec<u32>,
    fit: Fit,
    peak: u64,
    offsets: Vec<u64>,
    name: String,
}

struct Scratch {
    offsets: Vec<u64>,
    placed: Vec<bool>,
    /// Placement order so far (dense mode only).
    placed_list: Vec<u32>,
    gaps: Vec<(u64, u64)>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Self {
            offsets: vec![0; n],
            placed: vec![false; n],
            placed_list: Vec::new(),
            gaps: Vec::new(),
        }
    }
}

/// Blocks to place: a block is one tensor, or a group of tensors sharing an offset.
struct Problem {
    size: Vec<u64>,
    span: Vec<(usize, usize)>,
    members: Vec<Vec<usize>>,
    /// Blocks alive at a common step with each block, flattened: block `b`'s are
    /// `adjacency[adj_start[b]..adj_start[b + 1]]` (zero-sized blocks conflict with nothing).
    adjacency: Vec<u32>,
    adj_start: Vec<usize>,
    /// Too many conflicts to list: placement scans the blocks placed so far instead
    /// (quadratic time, linear memory).
    dense: bool,
    /// Cost of one placement pass, in blocks visited.
    work: u64,
}

impl Problem {
    fn new(size: Vec<u64>, span: Vec<(usize, usize)>, members: Vec<Vec<usize>>) -> Self {
        let n = size.len();
        let mut by_start: Vec<u32> = (0..n as u32).filter(|&b| size[b as usize] > 0).collect();
        by_start.sort_unstable_by_key(|&b| (span[b as usize].0, b));
        // Count the conflict pairs first: a pathological input (thousands of tensors all
        // alive together) must not turn into gigabytes of adjacency lists.
        let mut lasts: Vec<usize> = by_start.iter().map(|&b| span[b as usize].1).collect();
        lasts.sort_unstable();
        let pairs: u64 = by_start
            .iter()
            .enumerate()
            .map(|(i, &b)| (i - lasts.partition_point(|&l| l < span[b as usize].0)) as u64)
            .sum();
        if pairs > MAX_CONFLICT_PAIRS {
            return Self {
                size,
                span,
                members,
                adjacency: Vec::new(),
                adj_start: Vec::new(),
                dense: true,
                work: (n as u64).saturating_add(pairs.saturating_mul(2)).max(1),
            };
        }
        let mut conflicts: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut active: Vec<u32> = Vec::new();
        for &b in &by_start {
            let first = span[b as usize].0;
            active.retain(|&a| span[a as usize].1 >= first);
            for &a in &active {
                conflicts[a as usize].push(b);
                conflicts[b as usize].push(a);
            }
            active.push(b);
        }
        let mut adj_start = Vec::with_capacity(n + 1);
        let mut adjacency = Vec::with_capacity(conflicts.iter().map(Vec::len).sum());
        for c in &conflicts {
            adj_start.push(adjacency.len());
            adjacency.extend_from_slice(c);
        }
        adj_start.push(adjacency.len());
        let work = (n + adjacency.len()) as u64;
        Self {
            size,
            span,
            members,
            adjacency,
            adj_start,
            dense: false,
            work: work.max(1),
        }
    }

    /// Block `b`'s conflicts (empty in dense mode, where [`Problem::place`] scans instead).
    fn conflicts(&self, b: usize) -> &[u32] {
        if self.dense {
            return &[];
        }
        &self.adjacency[self.adj_start[b]..self.adj_start[b + 1]]
    }

    fn len(&self) -> usize {
        self.size.len()
    }

    /// The block sequence for one greedy order. Every key ends with the block index, so the
    /// order is total and independent of any hashing.
    fn order(&self, order: PlacementOrder) -> Vec<u32> {
        let mut seq: Vec<u32> = (0..self.len() as u32).collect();
        let size = |b: u32| self.size[b as usize];
        let first = |b: u32| self.span[b as usize].0;
        let last = |b: u32| self.span[b as usize].1;
        let len = |b: u32| last(b) - first(b);
        match order {
            PlacementOrder::Size => {
                seq.sort_unstable_by_key(|&b| (std::cmp::Reverse(size(b)), first(b), b))
            }
            PlacementOrder::Start => {
                seq.sort_unstable_by_key(|&b| (first(b), std::cmp::Reverse(size(b)), b))
            }
            PlacementOrder::Length => seq.sort_unstable_by_key(|&b| {
                (std::cmp::Reverse(len(b)), std::cmp::Reverse(size(b)), b)
            }),
            PlacementOrder::End => seq.sort_unstable_by_key(|&b| {
                (std::cmp::Reverse(last(b)), std::cmp::Reverse(size(b)), b)
            }),
            PlacementOrder::Area => seq.sort_unstable_by_key(|&b| {
                let area = u128::from(size(b)) * (len(b) as u128 + 1);
                (std::cmp::Reverse(area), b)
            }),
            PlacementOrder::Conflict => {
                let weight: Vec<u128> = (0..self.len())
                    .map(|b| {
                        self.conflicts(b)
                            .iter()
                            .map(|&c| u128::from(self.size[c as usize]))
                            .sum::<u128>()
                            + u128::from(self.size[b])
                    })
                    .collect();
                seq.sort_unstable_by_key(|&b| {
                    (
                        std::cmp::Reverse(weight[b as usize]),
                        std::cmp::Reverse(size(b)),
                        b,
                    )
                })
            }
            PlacementOrder::Breadth => {
                let key = self.breadth_keys();
                seq.sort_unstable_by_key(|&b| {
                    let (breadth, step) = key[b as usize];
                    (
                        std::cmp::Reverse(breadth),
                        step,
                        std::cmp::Reverse(size(b)),
                        b,
                    )
                })
            }
        }
        seq
    }

    /// For each block: the largest live-byte total over its lifetime and the earliest step
    /// reaching it. Sorting by it visits steps by decreasing breadth, as TFLite does.
    fn breadth_keys(&self) -> Vec<(u64, usize)> {
        // Live bytes only change at starts, so the distinct start steps are enough.
        let mut starts: Vec<usize> = self.span.iter().map(|s| s.0).collect();
        starts.sort_unstable();
        starts.dedup();
        let m = starts.len();
        let mut delta = vec![0i128; m + 1];
        for (b, &(f, l)) in self.span.iter().enumerate() {
            let s = i128::from(self.size[b]);
            let fi = starts.partition_point(|&x| x < f);
            let li = starts.partition_point(|&x| x <= l);
            delta[fi] += s;
            delta[li] -= s;
        }
        let mut live = Vec::with_capacity(m);
        let mut acc = 0i128;
        for d in delta.iter().take(m) {
            acc += d;
            live.push(u64::try_from(acc).unwrap_or(u64::MAX));
        }
        // Sparse table of (max live, earliest index) for range queries.
        let mut table: Vec<Vec<(u64, usize)>> =
            vec![live.iter().enumerate().map(|(i, &v)| (v, i)).collect()];
        let better = |a: (u64, usize), b: (u64, usize)| if b.0 > a.0 { b } else { a };
        let mut k = 1;
        while (1usize << k) <= m {
            let prev = &table[k - 1];
            let half = 1usize << (k - 1);
            let row: Vec<(u64, usize)> = (0..=m - (1 << k))
                .map(|i| better(prev[i], prev[i + half]))
                .collect();
            table.push(row);
            k += 1;
        }
        self.span
            .iter()
            .map(|&(f, l)| {
                let lo = starts.partition_point(|&x| x < f);
                let hi = starts.partition_point(|&x| x <= l);
                if hi <= lo {
                    return (0, f);
                }
                let k = (usize::BITS - 1 - (hi - lo).leading_zeros()) as usize;
                let (v, i) = better(table[k][lo], table[k][hi - (1 << k)]);
                (v, starts[i])
            })
            .collect()
    }

    /// Places blocks in `seq` order; returns the peak. Offsets land in `scratch.offsets`.
    fn place(&self, seq: &[u32], fit: Fit, scratch: &mut Scratch) -> u64 {
        let Scratch {
            offsets,
            placed,
            placed_list,
            gaps,
        } = scratch;
        placed_list.clear();
        offsets.resize(self.len(), 0);
        placed.clear();
        placed.resize(self.len(), false);
        let mut peak = 0u64;
        for &b in seq {
            let b = b as usize;
            let size = self.size[b];
            placed[b] = true;
            if size == 0 {
                offsets[b] = 0;
                continue;
            }
            gaps.clear();
            if self.dense {
                let (f, l) = self.span[b];
                for &c in placed_list.iter() {
                    let c = c as usize;
                    let (cf, cl) = self.span[c];
                    if cf <= l && f <= cl && self.size[c] > 0 {
                        gaps.push((offsets[c], offsets[c] + self.size[c]));
                    }
                }
                placed_list.push(b as u32);
            } else {
                for &c in self.conflicts(b) {
                    let c = c as usize;
                    if placed[c] {
                        gaps.push((offsets[c], offsets[c] + self.size[c]));
                    }
                }
            }
            gaps.sort_unstable();
            let mut prev_end = 0u64;
            let mut chosen: Option<(u64, u64)> = None; // (gap size, offset)
            for &(s, e) in gaps.iter() {
                if s > prev_end {
                    let gap = s - prev_end;
                    if gap >= size {
                        match fit {
                            Fit::First => {
                                chosen = Some((gap, prev_end));
                                break;
                            }
                            Fit::Best => {
                                if chosen.is_none_or(|(g, _)| gap < g) {
                                    chosen = Some((gap, prev_end));
                                }
                            }
                        }
                    }
                }
                prev_end = prev_end.max(e);
            }
            let off = chosen.map_or(prev_end, |(_, o)| o);
            offsets[b] = off;
            peak = peak.max(off + size);
        }
        peak
    }

    /// Number of blocks ending exactly at the peak: fewer means closer to lowering it.
    fn critical_count(&self, offsets: &[u64], peak: u64) -> usize {
        (0..self.len())
            .filter(|&b| self.size[b] > 0 && offsets[b] + self.size[b] == peak)
            .count()
    }

    /// Improves `best` by perturbing its order: move a block that touches the peak earlier,
    /// or move a random block. Accepts moves that do not worsen (peak, blocks at the
    /// peak), so it can cross plateaus. A fixed-seed generator keeps it deterministic.
    fn local_search(&self, best: &mut Candidate, stop: u64, effort: u64, scratch: &mut Scratch) {
        let n = best.order.len();
        if n < 2 {
            return;
        }
        // Small problems get far more passes per unit of effort than they can use: cap them.
        let evals = (effort / self.work).min(32 * n as u64 + 512);
        let mut rng = SplitMix64(0x5EED_A1E6_15C0_FFEE);
        let mut cur_order = best.order.clone();
        let mut cur_off = best.offsets.clone();
        let mut cur_obj = (best.peak, self.critical_count(&cur_off, best.peak));
        let mut pos = vec![0usize; n];
        let mut improved = false;
        let mut cand = cur_order.clone();
        for it in 0..evals {
            if best.peak <= stop {
                break;
            }
            cand.clear();
            cand.extend_from_slice(&cur_order);
            for (p, &b) in cand.iter().enumerate() {
                pos[b as usize] = p;
            }
            if it % 2 == 0 {
                // Pick one block at the peak and move it earlier.
                let peak = cur_obj.0;
                let crit: Vec<usize> = (0..self.len())
                    .filter(|&b| self.size[b] > 0 && cur_off[b] + self.size[b] == peak)
                    .collect();
                if crit.is_empty() {
                    continue;
                }
                let b = crit[rng.below(crit.len())];
                let from = pos[b];
                let to = if rng.below(4) == 0 {
                    0
                } else {
                    rng.below(from + 1)
                };
                move_item(&mut cand, from, to);
            } else {
                let from = rng.below(n);
                let to = rng.below(n);
                move_item(&mut cand, from, to);
            }
            let peak = self.place(&cand, best.fit, scratch);
            let obj = (peak, self.critical_count(&scratch.offsets, peak));
            if obj <= cur_obj {
                std::mem::swap(&mut cur_order, &mut cand);
                cur_off.clone_from(&scratch.offsets);
                cur_obj = obj;
                if peak < best.peak {
                    best.peak = peak;
                    best.order.clone_from(&cur_order);
                    best.offsets.clone_from(&cur_off);
                    improved = true;
                }
            }
        }
        if improved {
            best.name.push_str("+search");
        }
    }
}

fn move_item(v: &mut [u32], from: usize, to: usize) {
    if from < to {
        v[from..=to].rotate_left(1);
    } else if to < from {
        v[to..=from].rotate_right(1);
    }
}

/// A tiny fixed-seed generator (SplitMix64) so search is reproducible without a
/// dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
