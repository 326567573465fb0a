//! Deterministic data-parallel helpers over the kernels' own worker pool.
//!
//! Work is only ever split along *output* elements: every output element is computed by
//! exactly the same code and in the same order whatever the thread count, so results are
//! bit-identical for any `threads`. A call that splits moves onto the pool
//! ([`rayon::ThreadPool::install`]): there one worker spawns `threads - 1` pieces, runs the
//! last itself, then waits, running any piece no other worker has taken yet (rayon's work
//! stealing). The calling (stream) thread sleeps meanwhile. A pool, not a thread per piece: a
//! model runs hundreds of kernels per inference, and spawning OS threads for each cost more
//! than small kernels do.
//!
//! Why the pool runs every piece, the caller none: when the caller ran one piece itself
//! (rayon's global pool, then a pool of cores - 1 workers), it could only *wait* for the
//! pieces it had handed out, never take one back; a worker preempted by another process (or
//! spin-yielding its core away) then stalled the whole kernel for a scheduler time slice
//! (shufflenet at 2 threads: 6-7 ms some runs, 24 ms others, beside compiles). A worker of the
//! pool can take back its own unstarted pieces, and the sleeping caller does not compete with
//! the workers for cores. The pool is the crate's own (one worker per core), named
//! `aegis-kernel-N` in profiles.

use std::sync::OnceLock;

/// The kernels' pool, built on first use; `None` if no worker thread could be started (then
/// every kernel runs on its caller alone: the same results, only slower).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|i| format!("aegis-kernel-{i}"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "kernel worker pool not started; kernels run single-threaded"))
            .ok()
    })
    .as_ref()
}

/// `threads` capped to the pool's workers (more pieces than workers would only queue), and to
/// 1 when the pool could not be started. Results do not depend on it (splits are along output
/// elements only).
fn usable(threads: usize) -> usize {
    pool().map_or(1, |p| threads.min(p.current_num_threads()))
}

/// Splits `out` into at most `threads` contiguous pieces whose lengths are multiples of `unit`
/// (except possibly the last) and runs `f(first_unit_index, piece)` on each, in parallel.
/// `min_units` is the least number of units worth a thread (small jobs stay on the caller).
pub(crate) fn par_chunks<T: Send>(
    out: &mut [T],
    unit: usize,
    threads: usize,
    min_units: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let unit = unit.max(1);
    let units = out.len().div_ceil(unit);
    let threads = usable(threads).max(1).min(units / min_units.max(1)).max(1);
    let Some(pool) = pool().filter(|_| threads > 1) else {
        f(0, out);
        return;
    };
    let per = units.div_ceil(threads);
    // A panicking piece is a kernel bug; the scope re-raises it on the caller.
    pool.install(|| {
        rayon::in_place_scope(|s| {
            let f = &f;
            let mut rest = out;
            let mut first = 0;
            while !rest.is_empty() {
                let take = (per * unit).min(rest.len());
                let (piece, tail) = rest.split_at_mut(take);
                rest = tail;
                let start = first;
                first += per;
                if rest.is_empty() {
                    f(start, piece);
                } else {
                    s.spawn(move |_| f(start, piece));
                }
            }
        })
    });
}

/// Like [`par_chunks`] (with `min_units = 1`), but also lends each worker its own
/// `per_worker`-element piece of `scratch` (which must hold `workers(units, threads)` pieces),
/// and returns the first error (in chunk order) any worker reported.
pub(crate) fn par_chunks_scratch<T: Send, S: Send, E: Send>(
    out: &mut [T],
    unit: usize,
    threads: usize,
    scratch: &mut [S],
    per_worker: usize,
    f: impl Fn(usize, &mut [T], &mut [S]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let unit = unit.max(1);
    let units = out.len().div_ceil(unit);
    let workers = workers(units, threads);
    let Some(pool) = pool().filter(|_| workers > 1) else {
        let n = per_worker.min(scratch.len());
        return f(0, out, &mut scratch[..n]);
    };
    let per = units.div_ceil(workers);
    // One result slot per piece, so the first error in chunk order wins whatever finishes first.
    let mut results: Vec<Result<(), E>> = (0..workers).map(|_| Ok(())).collect();
    pool.install(|| {
        rayon::in_place_scope(|s| {
            let f = &f;
            let mut rest = out;
            let mut scr = scratch;
            let mut first = 0;
            // `workers` pieces of `per` units cover every unit, one slot each.
            for slot in results.iter_mut() {
                let take = (per * unit).min(rest.len());
                let (piece, tail) = rest.split_at_mut(take);
                rest = tail;
                let (sp, stail) = scr.split_at_mut(per_worker.min(scr.len()));
                scr = stail;
                let start = first;
                first += per;
                if rest.is_empty() {
                    *slot = f(start, piece, sp);
                    break;
                }
                s.spawn(move |_| *slot = f(start, piece, sp));
            }
        })
    });
    results.into_iter().collect()
}

/// Workers [`par_chunks_scratch`] uses for `units` units: never more than the units, and the
/// same ceil-division split as the loop above, so callers size scratch with it.
pub(crate) fn workers(units: usize, threads: usize) -> usize {
    let t = usable(threads).max(1).min(units.max(1));
    if t <= 1 {
        return 1;
    }
    let per = units.div_ceil(t);
    units.div_ceil(per)
}

/// Runs `f(item)` for every item, one worker per item (the last on the calling thread), and
/// returns the first error in item order.
pub(crate) fn par_workers<W: Send, E: Send>(
    items: Vec<W>,
    f: impl Fn(W) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let mut items = items;
    let Some(last) = items.pop() else {
        return Ok(());
    };
    let Some(pool) = pool().filter(|_| !items.is_empty()) else {
        // No pool: every item on the caller, in order.
        for w in items {
            f(w)?;
        }
        return f(last);
    };
    let mut results: Vec<Result<(), E>> = (0..items.len()).map(|_| Ok(())).collect();
    let mut mine = Ok(());
    pool.install(|| {
        rayon::in_place_scope(|s| {
            let f = &f;
            for (w, slot) in items.into_iter().zip(results.iter_mut()) {
                s.spawn(move |_| *slot = f(w));
            }
            mine = f(last);
        })
    });
    results.push(mine);
    results.into_iter().collect()
}
