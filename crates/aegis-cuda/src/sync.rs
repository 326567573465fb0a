//! The one place concurrency primitives come from, so the same code runs under `loom`.
//!
//! Code in this workspace imports `aegis_cuda::sync::...` instead of `std::sync`: with
//! `RUSTFLAGS="--cfg loom"` every primitive here is loom's model-checked stand-in (the pattern
//! of tokio's `loom` module and crossbeam-epoch's `primitive`).

#[cfg(loom)]
pub use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};
#[cfg(loom)]
pub use loom::thread;

#[cfg(not(loom))]
pub use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};
#[cfg(not(loom))]
pub use std::thread;

/// Locks a mutex, ignoring poisoning.
///
/// Every critical section in AegisRT leaves its data consistent before anything that can
/// panic runs (user work runs outside locks, under `catch_unwind`), so a poisoned lock holds
/// valid data and refusing it would only turn one fault into many.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on a condition variable, ignoring poisoning (see [`lock`]).
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// Polls `done` until it holds or `until` passes: spins between looks and yields the core
/// every `yield_every` looks (a yield is a syscall; on a busy machine the thread we wait for
/// may need this core). Returns whether `done` held. For short, bounded waits before a thread
/// parks (stream workers, the scheduling loop): never a substitute for blocking.
pub fn poll_until(
    until: std::time::Instant,
    yield_every: u32,
    mut done: impl FnMut() -> bool,
) -> bool {
    let every = yield_every.max(1);
    let mut n = 0u32;
    while !done() {
        n = n.wrapping_add(1);
        if n.is_multiple_of(every) {
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::poll_until;
    use std::time::{Duration, Instant};

    #[test]
    fn poll_until_stops_when_done_or_when_the_deadline_passes() {
        let mut looks = 0;
        assert!(poll_until(
            Instant::now() + Duration::from_secs(5),
            4,
            || {
                looks += 1;
                looks == 10
            }
        ));
        assert_eq!(looks, 10);
        let start = Instant::now();
        assert!(!poll_until(start + Duration::from_millis(2), 4, || false));
        assert!(start.elapsed() >= Duration::from_millis(2));
        // A yield interval of 0 is treated as 1, not a division by zero.
        assert!(!poll_until(Instant::now(), 0, || false));
    }
}
