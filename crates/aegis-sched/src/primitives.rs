//! The scheduler's concurrency building blocks, small enough to model-check with loom.
//!
//! Everything here is built on `aegis_cuda::sync` (std normally, loom under `--cfg loom`):
//! crossbeam's channels are not loom-instrumented, so the submission handoff is our own
//! `Mutex<VecDeque>` + `Condvar` type. They are public so that `tests/loom_*.rs` can model
//! them; the [`crate::Scheduler`] is their only user inside AegisRT.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aegis_cuda::sync::{lock, wait, AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard, Ordering};

/// How the loop was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopMode {
    /// Stop accepting; run everything already accepted to completion, then exit.
    Drain,
    /// Stop accepting; complete every queued request with `Cancelled`, let in-flight work
    /// finish (device work cannot be recalled), then exit.
    Cancel,
}

/// Why [`BoundedInbox::try_push`] refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushRefusal {
    /// `capacity` items are queued and not yet released by the consumer.
    Full {
        /// The inbox capacity.
        capacity: usize,
    },
    /// The inbox was closed.
    Closed,
}

struct InboxState<S, C> {
    submissions: VecDeque<S>,
    completions: Vec<C>,
    /// Items accepted and not yet released by the consumer (in the inbox or in the
    /// consumer's own queue): what the capacity bounds.
    queued: usize,
    next_seq: u64,
    stop: Option<StopMode>,
    /// A stop (or a stop-mode change) not yet reported by a take: wakes the consumer once.
    stop_news: bool,
    /// The consumer is blocked on `wake`; producers notify only then (saves a syscall per push).
    sleeping: bool,
    /// Set by [`BoundedInbox::poke`]: wakes the consumer once without posting an item.
    poked: bool,
}

/// What [`BoundedInbox::take`] handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Taken {
    /// Submissions moved into the consumer's buffer.
    pub submissions: usize,
    /// Completions moved into the consumer's buffer.
    pub completions: usize,
    /// The stop request, if any (sticky: reported on every take after `close`).
    pub stop: Option<StopMode>,
}

/// Many-producer, one-consumer handoff: bounded submissions (sequence-numbered in push order),
/// unbounded completions (a finished request must always be able to report), a stop signal,
/// and a consumer that sleeps when there is nothing to do.
///
/// Invariants: an item accepted by `try_push` is handed to the consumer exactly once, in
/// sequence order; after `close` no push is accepted, and every take reports the stop; a
/// producer never leaves the consumer asleep with work pending.
pub struct BoundedInbox<S, C> {
    state: Mutex<InboxState<S, C>>,
    wake: Condvar,
    /// Set by producers after a push, cleared by `take`: lets the consumer poll without the lock.
    dirty: AtomicBool,
    capacity: usize,
}

impl<S, C> std::fmt::Debug for BoundedInbox<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedInbox")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S, C> BoundedInbox<S, C> {
    /// An inbox bounding accepted-but-unreleased submissions to `capacity`.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(InboxState {
                submissions: VecDeque::new(),
                completions: Vec::new(),
                queued: 0,
                next_seq: 0,
                stop: None,
                stop_news: false,
                sleeping: false,
                poked: false,
            }),
            wake: Condvar::new(),
            dirty: AtomicBool::new(false),
            capacity,
        }
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Accepts `value` if there is room and the inbox is open: `make` turns it into the queued
    /// item given its sequence number (strictly increasing in acceptance order). On refusal the
    /// value comes back untouched.
    pub fn try_push<T>(
        &self,
        value: T,
        make: impl FnOnce(T, u64) -> S,
    ) -> Result<u64, (T, PushRefusal)> {
        let mut st = lock(&self.state);
        let seq = self.push_locked(&mut st, value, make)?;
        self.signal(st);
        Ok(seq)
    }

    /// Like [`Self::try_push`], but does not wake the consumer: returns the sequence number and
    /// whether the consumer was asleep. The caller must then either consume the item itself
    /// (with [`Self::take_submissions`]) or call [`Self::poke`] when the consumer was asleep.
    pub fn try_push_quiet<T>(
        &self,
        value: T,
        make: impl FnOnce(T, u64) -> S,
    ) -> Result<(u64, bool), (T, PushRefusal)> {
        let mut st = lock(&self.state);
        let seq = self.push_locked(&mut st, value, make)?;
        self.dirty.store(true, Ordering::Release);
        Ok((seq, st.sleeping))
    }

    /// The admission both pushes share: refuse when closed or full, else queue with the next
    /// sequence number.
    fn push_locked<T>(
        &self,
        st: &mut InboxState<S, C>,
        value: T,
        make: impl FnOnce(T, u64) -> S,
    ) -> Result<u64, (T, PushRefusal)> {
        if st.stop.is_some() {
            return Err((value, PushRefusal::Closed));
        }
        if st.queued >= self.capacity {
            return Err((
                value,
                PushRefusal::Full {
                    capacity: self.capacity,
                },
            ));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queued += 1;
        st.submissions.push_back(make(value, seq));
        Ok(seq)
    }

    /// Wakes the consumer once (its next wait returns at once) without posting anything: for
    /// news the consumer must look at that is not an item (a changed timer, deferred work).
    pub fn poke(&self) {
        let mut st = lock(&self.state);
        st.poked = true;
        self.signal(st);
    }

    /// Takes the pending submissions (not the completions), releasing `released` places;
    /// refuses (takes nothing, returns false) once the inbox is closed, so that only the
    /// consumer's own [`Self::take`] sees the stop.
    pub fn take_submissions(&self, released: usize, subs: &mut VecDeque<S>) -> bool {
        let mut st = lock(&self.state);
        st.queued = st.queued.saturating_sub(released);
        if st.stop.is_some() {
            return false;
        }
        if subs.is_empty() {
            std::mem::swap(subs, &mut st.submissions);
        } else {
            subs.extend(st.submissions.drain(..));
        }
        true
    }

    /// Consumer side: sleeps until something is pending (a submission, a completion, an
    /// unreported stop, a poke) or `until` passes; takes nothing.
    pub fn wait_news(&self, until: Option<Instant>) {
        let mut st = lock(&self.state);
        while st.submissions.is_empty() && st.completions.is_empty() && !st.stop_news && !st.poked {
            let timeout = match until {
                None => None,
                Some(t) => match t.checked_duration_since(Instant::now()) {
                    Some(d) if !d.is_zero() => Some(d),
                    _ => break,
                },
            };
            st.sleeping = true;
            st = match timeout {
                None => wait(&self.wake, st),
                Some(d) => wait_timeout(&self.wake, st, d),
            };
            st.sleeping = false;
        }
    }

    /// Posts a completion. Always accepted, also after `close`: in-flight work must report.
    pub fn push_completion(&self, c: C) {
        let mut st = lock(&self.state);
        st.completions.push(c);
        self.signal(st);
    }

    fn signal(&self, st: MutexGuard<'_, InboxState<S, C>>) {
        self.dirty.store(true, Ordering::Release);
        let sleeping = st.sleeping;
        drop(st);
        if sleeping {
            self.wake.notify_one();
        }
    }

    /// Closes the inbox: no more submissions are accepted. `Cancel` overrides `Drain`.
    pub fn close(&self, mode: StopMode) {
        let mut st = lock(&self.state);
        let next = match (st.stop, mode) {
            (Some(StopMode::Cancel), _) | (_, StopMode::Cancel) => StopMode::Cancel,
            _ => StopMode::Drain,
        };
        if st.stop != Some(next) {
            st.stop = Some(next);
            st.stop_news = true;
        }
        self.signal(st);
    }

    /// True once `close` has been called.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).stop.is_some()
    }

    /// Items accepted and not yet released.
    pub fn queued(&self) -> usize {
        lock(&self.state).queued
    }

    /// Consumer side: releases `released` queue places without taking anything.
    pub fn release(&self, released: usize) {
        let mut st = lock(&self.state);
        st.queued = st.queued.saturating_sub(released);
    }

    /// Cheap, lock-free hint that something was posted since the last `take`.
    pub fn has_news(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Consumer side, never blocks: releases `released` queue places (submissions that left
    /// the consumer's queue since the last call) and appends everything pending to the buffers.
    pub fn take(&self, released: usize, subs: &mut VecDeque<S>, comps: &mut Vec<C>) -> Taken {
        let st = lock(&self.state);
        self.take_locked(st, released, subs, comps)
    }

    fn take_locked(
        &self,
        mut st: MutexGuard<'_, InboxState<S, C>>,
        released: usize,
        subs: &mut VecDeque<S>,
        comps: &mut Vec<C>,
    ) -> Taken {
        st.queued = st.queued.saturating_sub(released);
        let taken = Taken {
            submissions: st.submissions.len(),
            completions: st.completions.len(),
            stop: st.stop,
        };
        if subs.is_empty() {
            // Swap buffers instead of moving items one by one: the common case is O(1).
            std::mem::swap(subs, &mut st.submissions);
        } else {
            subs.extend(st.submissions.drain(..));
        }
        comps.append(&mut st.completions);
        st.stop_news = false;
        st.poked = false;
        self.dirty.store(false, Ordering::Release);
        taken
    }

    /// Consumer side: like [`Self::take`], but when nothing new is pending (no submission, no
    /// completion, no unreported stop) first sleeps until something is posted or `until` passes.
    pub fn take_or_wait(
        &self,
        released: usize,
        until: Option<Instant>,
        subs: &mut VecDeque<S>,
        comps: &mut Vec<C>,
    ) -> Taken {
        let mut st = lock(&self.state);
        st.queued = st.queued.saturating_sub(released);
        while st.submissions.is_empty() && st.completions.is_empty() && !st.stop_news && !st.poked {
            let timeout = match until {
                None => None,
                Some(t) => match t.checked_duration_since(Instant::now()) {
                    Some(d) if !d.is_zero() => Some(d),
                    _ => break,
                },
            };
            st.sleeping = true;
            st = match timeout {
                None => wait(&self.wake, st),
                Some(d) => wait_timeout(&self.wake, st, d),
            };
            st.sleeping = false;
        }
        self.take_locked(st, 0, subs, comps)
    }
}

/// Waits with a timeout, ignoring poisoning (see `aegis_cuda::sync::lock`). Callers re-check
/// their condition and the clock, so whether it timed out does not matter. (loom does not model
/// timeouts: there it waits for a notification.)
fn wait_timeout<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>, d: Duration) -> MutexGuard<'a, T> {
    match cv.wait_timeout(guard, d) {
        Ok((g, _)) => g,
        Err(e) => e.into_inner().0,
    }
}

/// A set of up to 64 slots (stream indices), each free or held, with lock-free acquire and
/// release. Acquisition is deterministic: the first free slot in the caller's preference
/// order.
#[derive(Debug)]
pub struct SlotSet {
    free: AtomicU64,
    len: usize,
}

impl SlotSet {
    /// The largest number of slots.
    pub const MAX: usize = 64;

    /// `len` slots, all free. `len` is clamped to [`Self::MAX`].
    pub fn new(len: usize) -> Self {
        let len = len.min(Self::MAX);
        let bits = if len == Self::MAX {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        Self {
            free: AtomicU64::new(bits),
            len,
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set has no slots.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of free slots right now.
    pub fn free_count(&self) -> usize {
        self.free.load(Ordering::Acquire).count_ones() as usize
    }

    /// True when `slot` is free right now.
    pub fn is_free(&self, slot: usize) -> bool {
        slot < self.len && self.free.load(Ordering::Acquire) & (1 << slot) != 0
    }

    /// Acquires the first free slot in `order` (indices out of range are skipped).
    pub fn try_acquire_in(&self, order: &[usize]) -> Option<usize> {
        let mut cur = self.free.load(Ordering::Acquire);
        loop {
            let slot = order
                .iter()
                .copied()
                .find(|&i| i < self.len && cur & (1 << i) != 0)?;
            match self.free.compare_exchange_weak(
                cur,
                cur & !(1 << slot),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(slot),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Acquires the lowest free slot.
    pub fn try_acquire(&self) -> Option<usize> {
        let mut cur = self.free.load(Ordering::Acquire);
        loop {
            if cur == 0 {
                return None;
            }
            let slot = cur.trailing_zeros() as usize;
            match self.free.compare_exchange_weak(
                cur,
                cur & !(1 << slot),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(slot),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Releases `slot`. Returns false (and changes nothing) if it was not held: a double
    /// release is a caller bug that must not hand one stream to two requests.
    pub fn release(&self, slot: usize) -> bool {
        if slot >= self.len {
            return false;
        }
        let prev = self.free.fetch_or(1 << slot, Ordering::AcqRel);
        prev & (1 << slot) == 0
    }
}

enum CellState<T> {
    Pending,
    Ready(T),
    Taken,
}

/// A one-shot result slot: completed at most once, taken at most once, waitable.
pub struct CompletionCell<T> {
    state: Mutex<(CellState<T>, usize)>,
    cv: Condvar,
}

impl<T> std::fmt::Debug for CompletionCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match &lock(&self.state).0 {
            CellState::Pending => "pending",
            CellState::Ready(_) => "ready",
            CellState::Taken => "taken",
        };
        f.debug_struct("CompletionCell").field("state", &s).finish()
    }
}

impl<T> Default for CompletionCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> CompletionCell<T> {
    /// An empty cell.
    pub fn new() -> Self {
        Self {
            // (state, waiters): `complete` pays for a notify (a syscall) only when someone waits.
            state: Mutex::new((CellState::Pending, 0)),
            cv: Condvar::new(),
        }
    }

    /// Stores the value. A second completion is refused and the value handed back.
    pub fn complete(&self, value: T) -> Result<(), T> {
        let mut st = lock(&self.state);
        if !matches!(st.0, CellState::Pending) {
            return Err(value);
        }
        st.0 = CellState::Ready(value);
        let waiters = st.1;
        drop(st);
        if waiters > 0 {
            self.cv.notify_all();
        }
        Ok(())
    }

    /// True once completed (taken or not).
    pub fn is_complete(&self) -> bool {
        !matches!(lock(&self.state).0, CellState::Pending)
    }

    /// Takes the value if it is there.
    pub fn try_take(&self) -> Option<T> {
        let mut st = lock(&self.state);
        Self::take_ready(&mut st.0)
    }

    fn take_ready(st: &mut CellState<T>) -> Option<T> {
        match std::mem::replace(st, CellState::Taken) {
            CellState::Ready(v) => Some(v),
            other => {
                *st = other;
                None
            }
        }
    }

    /// Blocks until completed and takes the value; `None` if it was already taken.
    pub fn wait(&self) -> Option<T> {
        let mut st = lock(&self.state);
        while matches!(st.0, CellState::Pending) {
            st.1 += 1;
            st = wait(&self.cv, st);
            st.1 -= 1;
        }
        Self::take_ready(&mut st.0)
    }

    /// Like [`Self::wait`] for at most `timeout`; `None` on timeout (or if already taken).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<T> {
        let end = Instant::now().checked_add(timeout);
        let mut st = lock(&self.state);
        while matches!(st.0, CellState::Pending) {
            let left = match end {
                // An unrepresentable end is "forever".
                None => Duration::from_secs(3600),
                Some(end) => match end.checked_duration_since(Instant::now()) {
                    Some(d) if !d.is_zero() => d,
                    _ => return None,
                },
            };
            st.1 += 1;
            st = wait_timeout(&self.cv, st, left);
            st.1 -= 1;
        }
        Self::take_ready(&mut st.0)
    }
}
