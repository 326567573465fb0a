//! Deterministic data-parallel helpers over `std::thread::scope`.
//!
//! Work is only ever split along *output* elements: every output element is computed by
//! exactly the same code and in the same order whatever the thread count, so results are
//! bit-identical for any `threads`. No global pool: each call spawns `threads - 1` scoped
//! threads and runs the last share itself.

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
    let threads = threads.max(1).min(units / min_units.max(1)).max(1);
    if threads <= 1 {
        f(0, out);
        return;
    }
    let per = units.div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let mut rest = out;
        let mut first = 0;
        let mut spawned = Vec::with_capacity(threads);
        while !rest.is_empty() {
            let take = (per * unit).min(rest.len());
            let (piece, tail) = rest.split_at_mut(take);
            rest = tail;
            let start = first;
            first += per;
            if rest.is_empty() {
                f(start, piece);
            } else {
                spawned.push(s.spawn(move || f(start, piece)));
            }
        }
        for h in spawned {
            // A panicking worker is a kernel bug; re-raise it on the caller.
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
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
    if workers <= 1 {
        let n = per_worker.min(scratch.len());
        return f(0, out, &mut scratch[..n]);
    }
    let per = units.div_ceil(workers);
    std::thread::scope(|s| {
        let f = &f;
        let mut rest = out;
        let mut scr = scratch;
        let mut first = 0;
        let mut spawned = Vec::with_capacity(workers);
        let mut last = Ok(());
        while !rest.is_empty() {
            let take = (per * unit).min(rest.len());
            let (piece, tail) = rest.split_at_mut(take);
            rest = tail;
            let (sp, stail) = scr.split_at_mut(per_worker.min(scr.len()));
            scr = stail;
            let start = first;
            first += per;
            if rest.is_empty() {
                last = f(start, piece, sp);
            } else {
                spawned.push(s.spawn(move || f(start, piece, sp)));
            }
        }
        let mut result = Ok(());
        for h in spawned {
            match h.join() {
                Ok(r) => {
                    if result.is_ok() {
                        result = r;
                    }
                }
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        result.and(last)
    })
}

/// Workers [`par_chunks_scratch`] uses for `units` units: never more than the units, and the
/// same ceil-division split as the loop above, so callers size scratch with it.
pub(crate) fn workers(units: usize, threads: usize) -> usize {
    let t = threads.max(1).min(units.max(1));
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
    if items.is_empty() {
        return f(last);
    }
    std::thread::scope(|s| {
        let f = &f;
        let spawned: Vec<_> = items.into_iter().map(|w| s.spawn(move || f(w))).collect();
        let mine = f(last);
        let mut result = Ok(());
        for h in spawned {
            match h.join() {
                Ok(r) => {
                    if result.is_ok() {
                        result = r;
                    }
                }
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        result.and(mine)
    })
}
