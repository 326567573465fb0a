//! Dependency tracking across streams: which stream runs each step, and exactly where an
//! event is recorded and waited so that every cross-stream read-after-write and every reuse
//! of arena memory (write-after-read/write, from the static plan) is ordered.

use crate::graph::{ExecutionGraph, Op, TensorKind};

/// The stream schedule of one prepared model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAssignment {
    /// Number of streams the schedule uses (≤ the number asked for).
    pub streams: usize,
    /// Stream of each step (index = position in the graph's topological order).
    pub stream_of: Vec<usize>,
    /// Events each step waits on before it runs.
    pub waits: Vec<Vec<usize>>,
    /// Event recorded right after each step, if any stream needs to wait for it.
    pub record_after: Vec<Option<usize>>,
    /// Event recorded on stream 0 after the inputs are written (the "start"), if needed.
    pub start_event: Option<usize>,
    /// For each stream other than 0: (stream, event recorded after its last step), waited on
    /// by stream 0 before outputs are read.
    pub joins: Vec<(usize, usize)>,
    /// Total events used.
    pub events: usize,
}

/// Rough work estimate of a step, used to balance streams (multiply-adds or elements).
fn cost(g: &ExecutionGraph, step: usize) -> u64 {
    let node = g.node(g.topological_order()[step]);
    let out: u64 = node
        .outputs
        .iter()
        .map(|&t| g.tensor(t).num_elements() as u64)
        .sum();
    match &node.op {
        Op::Conv {
            kernel_shape,
            group,
            ..
        } => {
            let c_in = node
                .inputs
                .first()
                .map(|&t| g.tensor(t).shape.get(1).copied().unwrap_or(1))
                .unwrap_or(1);
            let k: usize = kernel_shape.iter().product();
            out.saturating_mul((c_in / (*group).max(1) * k) as u64)
        }
        Op::MatMul | Op::Gemm { .. } => {
            let k = node
                .inputs
                .first()
                .and_then(|&t| g.tensor(t).shape.last().copied())
                .unwrap_or(1);
            out.saturating_mul(k as u64)
        }
        _ => out,
    }
}

/// Each step's dependencies (positions in the topological order): the producers of its
/// inputs and, with `memory` (several streams), every earlier step that touched arena memory
/// the plan reuses for its outputs. Sorted, without repeats.
pub(crate) fn step_deps(g: &ExecutionGraph, memory: bool) -> Vec<Vec<usize>> {
    let order = g.topological_order();
    let n = order.len();
    let mut pos_of_node = vec![usize::MAX; g.operators().len()];
    for (p, id) in order.iter().enumerate() {
        pos_of_node[id.index()] = p;
    }
    let plan = g.plan();
    // Dependencies of each step: producers of its inputs, and every step that touched arena
    // memory its outputs reuse (from the static plan).
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (p, id) in order.iter().enumerate() {
        let node = g.node(*id);
        for &t in &node.inputs {
            if let Some(pr) = g.producer(t) {
                deps[p].push(pos_of_node[pr.index()]);
            }
        }
    }
    if memory {
        // Planned ranges of every arena tensor: (start, end, producer step, last reader step).
        let mut ranges = Vec::new();
        for (i, t) in g.tensors().iter().enumerate() {
            if t.kind == TensorKind::Constant {
                continue;
            }
            let (Some(off), Some(life)) = (plan.offset_of(i), plan.lifetime_of(i)) else {
                continue;
            };
            let id = crate::graph::TensorId(i as u32);
            let mut touch: Vec<usize> = g
                .consumers(id)
                .iter()
                .map(|c| pos_of_node[c.index()])
                .collect();
            if let Some(pr) = g.producer(id) {
                touch.push(pos_of_node[pr.index()]);
            }
            ranges.push((off, off + life.size_bytes, i, touch));
        }
        for (a_start, a_end, a, _) in &ranges {
            let Some(pa) = g.producer(crate::graph::TensorId(*a as u32)) else {
                continue;
            };
            let pa = pos_of_node[pa.index()];
            for (b_start, b_end, b, touch_b) in &ranges {
                if a == b || !(a_start < b_end && b_start < a_end) {
                    continue;
                }
                // `b` shares memory with `a`; every step that touched `b` before `a` is written
                // must finish first.
                for &s in touch_b {
                    if s < pa {
                        deps[pa].push(s);
                    }
                }
            }
        }
    }
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    deps
}

/// Assigns steps to at most `streams` streams and places the minimum events this greedy
/// schedule needs (transitively implied waits are skipped).
///
/// Placement: a step continues the stream of a predecessor that is currently that stream's
/// last step (no event needed); otherwise it goes to the least-loaded stream (lowest index on
/// ties). Deterministic: depends only on the graph and its plan.
pub fn assign_streams(g: &ExecutionGraph, streams: usize) -> StreamAssignment {
    assign_streams_fused(g, streams, &[])
}

/// [`assign_streams`] for a model whose kernels fuse steps: `runs_with[p] = Some(h)` (`h < p`)
/// when step `p`'s work runs inside step `h`'s kernel (an activation fused into a conv), so
/// `p`'s outputs are written when `h` runs. Everything `p` must wait for (its inputs'
/// producers, and every earlier step that touched arena memory its outputs reuse) becomes a
/// dependency of `h`, and `p` stays on `h`'s stream; without this, a fused write could race
/// with another stream's last read of memory the plan reuses for it. Steps past
/// `runs_with.len()` are not fused.
pub fn assign_streams_fused(
    g: &ExecutionGraph,
    streams: usize,
    runs_with: &[Option<usize>],
) -> StreamAssignment {
    let n = g.topological_order().len();
    let streams = streams.max(1);
    let mut deps = step_deps(g, streams > 1);
    // A fused step's dependencies are its host's (the host writes its outputs).
    for (p, h) in runs_with.iter().enumerate() {
        if let Some(h) = *h {
            let extra: Vec<usize> = deps[p].iter().copied().filter(|&d| d < h).collect();
            deps[h].extend(extra);
        }
    }
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }

    let mut stream_of = vec![0usize; n];
    let mut pos_in_stream = vec![0usize; n];
    let mut len = vec![0usize; streams]; // steps placed per stream
    let mut last = vec![None::<usize>; streams];
    let mut load = vec![0u64; streams];
    for p in 0..n {
        let tail = deps[p]
            .iter()
            .rev()
            .find(|&&d| last[stream_of[d]] == Some(d))
            .map(|&d| stream_of[d]);
        let s = match runs_with.get(p).copied().flatten() {
            // A fused step runs (as nothing) on its host's stream.
            Some(h) => stream_of[h],
            None => tail.unwrap_or_else(|| (0..streams).min_by_key(|&s| (load[s], s)).unwrap_or(0)),
        };
        stream_of[p] = s;
        len[s] += 1;
        pos_in_stream[p] = len[s]; // 1-based: 0 means "nothing yet"
        last[s] = Some(p);
        load[s] = load[s].saturating_add(cost(g, p).max(1));
    }
    // Unused streams are picked lowest index first (their load is zero), so the used ones
    // are exactly 0..used.
    let streams = (0..streams).filter(|&s| len[s] > 0).count().max(1);

    // known[s][o]: stream s has waited for stream o up to its step number known[s][o]
    // (1-based position within o). Stream 0 position 0 is the upload, "virtual step 0".
    let mut known = vec![vec![0usize; streams]; streams];
    let mut snapshot: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waits = vec![Vec::new(); n];
    let mut record_after = vec![None; n];
    let mut events = 0usize;
    let mut start_event = None;
    let mut pos = vec![0usize; streams];
    let mut first_done = vec![false; streams];
    for p in 0..n {
        let s = stream_of[p];
        // Candidate waits: the latest unknown dependency per other stream (a later point on a
        // stream implies the earlier ones)...
        let mut chosen: Vec<usize> = Vec::new();
        for &d in deps[p].iter().rev() {
            let o = stream_of[d];
            if o == s
                || known[s][o] >= pos_in_stream[d]
                || chosen.iter().any(|&c| stream_of[c] == o)
            {
                continue;
            }
            chosen.push(d);
        }
        // ...minus those another chosen wait already implies transitively.
        let implied = |d: usize, by: usize| {
            snapshot[by]
                .get(stream_of[d])
                .is_some_and(|&v| v >= pos_in_stream[d])
        };
        let keep: Vec<usize> = chosen
            .iter()
            .copied()
            .filter(|&d| !chosen.iter().any(|&c| c != d && implied(d, c)))
            .collect();
        for d in keep {
            let o = stream_of[d];
            let ev = *record_after[d].get_or_insert_with(|| {
                events += 1;
                events - 1
            });
            waits[p].push(ev);
            let snap = snapshot[d].clone();
            for (k, v) in snap.iter().enumerate() {
                known[s][k] = known[s][k].max(*v);
            }
            known[s][o] = known[s][o].max(pos_in_stream[d]);
        }
        if s != 0 && !first_done[s] && known[s][0] == 0 {
            // A stream's first step runs after the inputs are written on stream 0 (which also
            // orders it after the previous inference's reads, joined into stream 0), unless a
            // wait above already orders it after later work on stream 0.
            let ev = *start_event.get_or_insert_with(|| {
                events += 1;
                events - 1
            });
            waits[p].push(ev);
        }
        first_done[s] = true;
        pos[s] += 1;
        known[s][s] = pos[s];
        snapshot[p] = known[s].clone();
    }
    let mut joins = Vec::new();
    for s in 1..streams {
        if known[0][s] < pos[s] {
            if let Some(lastp) = (0..n).rev().find(|&p| stream_of[p] == s) {
                let ev = *record_after[lastp].get_or_insert_with(|| {
                    events += 1;
                    events - 1
                });
                joins.push((s, ev));
            }
        }
    }
    StreamAssignment {
        streams,
        stream_of,
        waits,
        record_after,
        start_event,
        joins,
        events,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{assign_streams_fused, step_deps, StreamAssignment};
    use crate::{ExecutionGraph, LoadOptions};

    /// Per step, how far each stream is known to have run when it starts (1-based positions
    /// within streams), replaying the schedule's waits in order.
    fn known_at(a: &StreamAssignment) -> (Vec<Vec<usize>>, Vec<usize>) {
        let n = a.stream_of.len();
        let mut pos_in_stream = vec![0; n];
        let mut len = vec![0; a.streams];
        for p in 0..n {
            len[a.stream_of[p]] += 1;
            pos_in_stream[p] = len[a.stream_of[p]];
        }
        let mut cur = vec![vec![0usize; a.streams]; a.streams];
        let mut at_event = vec![vec![0usize; a.streams]; a.events];
        let mut known = vec![Vec::new(); n];
        for p in 0..n {
            let s = a.stream_of[p];
            for &e in &a.waits[p] {
                for (k, v) in at_event[e].clone().into_iter().enumerate() {
                    cur[s][k] = cur[s][k].max(v);
                }
            }
            known[p] = cur[s].clone();
            cur[s][s] = pos_in_stream[p];
            if let Some(e) = a.record_after[p] {
                at_event[e] = cur[s].clone();
            }
        }
        (known, pos_in_stream)
    }

    /// With fused kernels, a host step writes its fused steps' outputs, so it must start
    /// after everything they depend on (their inputs, and earlier readers on any stream of
    /// arena memory their outputs reuse).
    #[test]
    fn fused_steps_dependencies_finish_before_their_host() {
        for name in [
            "light-inception_v1",
            "lightrand-squeezenet",
            "lightrand-shufflenet",
            "light-densenet121",
        ] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/models")
                .join(name)
                .join("model.onnx");
            let g = ExecutionGraph::load(&p, &LoadOptions::default()).unwrap();
            let runs = crate::ops::plan_kernels(&g, 1).unwrap().runs_with_steps(&g);
            let fused = runs.iter().filter(|r| r.is_some()).count();
            assert!(fused > 0, "{name}: expected fused activations");
            let deps = step_deps(&g, true);
            for streams in [2, 4] {
                let a = assign_streams_fused(&g, streams, &runs);
                let (known, pos) = known_at(&a);
                for (f, h) in runs.iter().enumerate() {
                    let Some(h) = *h else { continue };
                    assert_eq!(a.stream_of[f], a.stream_of[h], "{name}: step {f}");
                    for &d in deps[f].iter().filter(|&&d| d < h) {
                        assert!(
                            known[h][a.stream_of[d]] >= pos[d],
                            "{name}, {streams} streams: step {h} (running step {f}) may start \
                             before step {d} finishes"
                        );
                    }
                }
            }
        }
    }
}
