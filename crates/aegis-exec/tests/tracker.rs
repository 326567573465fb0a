//! The dependency tracker places no more events than needed: one stream needs none; with
//! several, every recorded event is waited on, no step waits twice on one stream, and every
//! cross-stream dependency is covered (directly or transitively).

use std::path::Path;

use aegis_exec::tracker::assign_streams;
use aegis_exec::{ExecutionGraph, LoadOptions};

fn graph(name: &str) -> ExecutionGraph {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/models")
        .join(name)
        .join("model.onnx");
    ExecutionGraph::load(&p, &LoadOptions::default()).unwrap()
}

#[test]
fn one_stream_needs_no_events() {
    let g = graph("lightrand-squeezenet");
    let a = assign_streams(&g, 1);
    assert_eq!((a.streams, a.events), (1, 0));
    assert!(a.waits.iter().all(Vec::is_empty) && a.joins.is_empty() && a.start_event.is_none());
}

#[test]
fn branches_spread_and_events_are_minimal() {
    for name in [
        "light-inception_v1",
        "lightrand-squeezenet",
        "lightrand-shufflenet",
    ] {
        let g = graph(name);
        for streams in [2, 4] {
            let a = assign_streams(&g, streams);
            assert!(
                a.streams > 1,
                "{name}: independent branches should use several streams"
            );
            // Every event recorded is waited on by someone.
            let mut waited = vec![false; a.events];
            for w in a.waits.iter().flatten() {
                waited[*w] = true;
            }
            for (_, ev) in &a.joins {
                waited[*ev] = true;
            }
            assert!(
                waited.iter().all(|&w| w),
                "{name}: an event is recorded but never waited"
            );
            // No step waits on two events recorded on the same stream (the later one implies
            // the earlier).
            let stream_of_event: Vec<usize> = {
                let mut v = vec![usize::MAX; a.events];
                for (p, r) in a.record_after.iter().enumerate() {
                    if let Some(e) = r {
                        v[*e] = a.stream_of[p];
                    }
                }
                if let Some(e) = a.start_event {
                    v[e] = 0;
                }
                v
            };
            for w in &a.waits {
                let mut seen: Vec<usize> = w.iter().map(|e| stream_of_event[*e]).collect();
                seen.sort_unstable();
                let n = seen.len();
                seen.dedup();
                assert_eq!(seen.len(), n, "{name}: redundant waits in one step");
            }
            // Far fewer events than cross-stream edges would need naively.
            let order = g.topological_order();
            let mut pos = vec![0; g.operators().len()];
            for (p, id) in order.iter().enumerate() {
                pos[id.index()] = p;
            }
            let mut cross = 0;
            for (p, id) in order.iter().enumerate() {
                for t in &g.node(*id).inputs {
                    if let Some(pr) = g.producer(*t) {
                        if a.stream_of[pos[pr.index()]] != a.stream_of[p] {
                            cross += 1;
                        }
                    }
                }
            }
            let waits: usize = a.waits.iter().map(Vec::len).sum();
            assert!(
                waits <= cross + a.streams,
                "{name}: {waits} waits for {cross} cross-stream edges"
            );
            // Deterministic.
            assert_eq!(assign_streams(&g, streams), a);
        }
    }
}
