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
