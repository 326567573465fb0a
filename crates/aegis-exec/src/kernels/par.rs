//! Deterministic data-parallel helpers over the host compute team
//! ([`aegis_cuda::host_parallel_for`]).
//!
//! Work is only ever split along *output* elements: every output element is computed by
//! exactly the same code and in the same order whatever the thread count, so results are
//! bit-identical for any `threads`.
//!
//! Why the team and this shape: a kernel is cut into pieces that the calling (stream) thread
//! and the team's helper threads *claim* from one counter, the caller included. The caller
//! never hands work over and sleeps (a pool entered with `install` cost a cross-thread
//! hand-off and two wake-ups per kernel, 5-25 us each on a VM, times hundreds of kernels per
//! inference), and it never waits for a piece nobody started: a helper that is parked,
//! preempted or busy with another stream's kernel simply takes no piece, and the caller runs
//! them all. Helpers linger briefly after a kernel, so the next one is picked up without a
//! wake-up. [`par_chunks`] cuts up to [`PIECES_PER_THREAD`] pieces per thread, so a helper
//! that arrives late or runs slow still takes a fair share; [`par_chunks_scratch`] keeps
//! exactly [`workers`] pieces (its callers size per-worker scratch with it, and their pieces
//! repeat per-call setup such as im2col tiles), lent out by the team's `slot`.

use aegis_cuda::sync::{lock, Mutex};
use aegis_cuda::{host_parallel_for, host_team_threads};

/// Pieces [`par_chunks`] aims for per thread: enough for a late or slow thread's share to be
/// taken by the others, few enough that each piece stays long against its claim (one atomic).
const PIECES_PER_THREAD: usize = 4;

/// `threads` capped to the team's threads (more would only queue). Results do not depend on
/// it (splits are along output elements only). `threads <= 1` never starts the team.
fn usable(threads: usize) -> usize {
    if threads <= 1 {
        1
    } else {
        threads.min(host_team_threads())
    }
}

/// Takes the value out of a piece's cell. Each piece is claimed once, so the lock is never
/// contended; it only turns "piece `i` is mine" into a `&mut` safely.
fn take<V>(cell: &Mutex<Option<V>>) -> Option<V> {
    lock(cell).take()
}

/// Splits `out` into contiguous pieces whose lengths are multiples of `unit` (except possibly
/// the last) and runs `f(first_unit_index, piece)` on each, on up to `threads` threads.
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
    let most = units / min_units.max(1);
    let threads = usable(threads).min(most).max(1);
    if threads <= 1 {
        f(0, out);
        return;
    }
    let per = units.div_ceil((threads * PIECES_PER_THREAD).min(most));
    let pieces: Vec<Mutex<Option<&mut [T]>>> = out
        .chunks_mut(per * unit)
        .map(|c| Mutex::new(Some(c)))
        .collect();
    host_parallel_for(pieces.len(), threads, &|i, _slot| {
        if let Some(piece) = take(&pieces[i]) {
            f(i * per, piece);
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
    let nw = workers(units, threads);
    if nw <= 1 {
        let n = per_worker.min(scratch.len());
        return f(0, out, &mut scratch[..n]);
    }
    let per = units.div_ceil(nw);
    // `nw` pieces of `per` units cover every unit; the team's slots (below `nw`) pick the
    // scratch, so two pieces running at once never share it.
    let pieces: Vec<Mutex<Option<&mut [T]>>> = out
        .chunks_mut(per * unit)
        .map(|c| Mutex::new(Some(c)))
        .collect();
    let mut scr = Vec::with_capacity(nw);
    let mut rest = scratch;
    for _ in 0..nw {
        let (sp, tail) = rest.split_at_mut(per_worker.min(rest.len()));
        rest = tail;
        scr.push(Mutex::new(sp));
    }
    // One result per piece, so the first error in chunk order wins whatever finishes first.
    let results: Vec<Mutex<Option<E>>> = (0..pieces.len()).map(|_| Mutex::new(None)).collect();
    host_parallel_for(pieces.len(), nw, &|i, slot| {
        if let Some(piece) = take(&pieces[i]) {
            let mut sp = lock(&scr[slot]);
            if let Err(e) = f(i * per, piece, &mut sp[..]) {
                *lock(&results[i]) = Some(e);
            }
        }
    });
    first_error(&results)
}

/// The first error in piece order.
fn first_error<E>(results: &[Mutex<Option<E>>]) -> Result<(), E> {
    match results.iter().find_map(|r| lock(r).take()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Workers [`par_chunks_scratch`] uses for `units` units: never more than the units, and the
/// same ceil-division split as its pieces, so callers size scratch with it.
pub(crate) fn workers(units: usize, threads: usize) -> usize {
    let t = usable(threads).min(units.max(1));
    if t <= 1 {
        return 1;
    }
    let per = units.div_ceil(t);
    units.div_ceil(per)
}

/// Runs `f(item)` for every item, each item one piece of the team (the caller takes pieces
/// too), and returns the first error in item order.
pub(crate) fn par_workers<W: Send, E: Send>(
    items: Vec<W>,
    f: impl Fn(W) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let n = items.len();
    if n <= 1 {
        return items.into_iter().try_for_each(f);
    }
    let cells: Vec<Mutex<Option<W>>> = items.into_iter().map(|w| Mutex::new(Some(w))).collect();
    let results: Vec<Mutex<Option<E>>> = (0..n).map(|_| Mutex::new(None)).collect();
    host_parallel_for(n, n, &|i, _slot| {
        if let Some(w) = take(&cells[i]) {
            if let Err(e) = f(w) {
                *lock(&results[i]) = Some(e);
            }
        }
    });
    first_error(&results)
}
