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
