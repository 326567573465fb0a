//! The host compute team's job protocol: a caller publishes a job that borrows its own stack
//! (the closure), helpers pick it up, and the caller retracts it before returning. The one
//! `unsafe` is the lifetime erasure that lets a published job sit in the team's registry; its
//! soundness rests on the protocol below, so the whole protocol lives here, in one place to
//! audit.
//!
//! # Protocol
//! - The registry (`State::jobs`) holds pointers to live jobs only: a caller pushes its job
//!   under the registry lock and removes it under the same lock before its stack frame ends.
//! - A helper dereferences a job pointer only (a) under the registry lock while the job is in
//!   the registry, or (b) while *registered* on it: it increments `Job::active` under the lock
//!   (while the job is still published), and its last access to the job is the decrement of
//!   `active`, made under the lock.
//! - The caller, after removing its job, waits until `active` is 0 (read under the lock, or a
//!   lock-free poll that sees the final decrement: after it the helper touches only the team's
//!   own state, never the job). So once the caller returns nobody holds the job.
//! - Pieces are claimed from `Job::next` (one `fetch_add` each), so each piece runs once; the
//!   caller claims like any helper and can therefore always finish alone: it only ever waits
//!   for pieces some registered helper has already claimed and is running.

use crate::sync::{lock, wait, Arc, AtomicUsize, Condvar, Mutex, Ordering};
use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::time::Duration;

/// A panic payload caught on a helper, re-raised on the caller.
type Payload = Box<dyn Any + Send + 'static>;

/// One call's work: `pieces` calls of `f`, on at most `threads` threads.
struct Job<'a> {
    f: &'a (dyn Fn(usize, usize) + Sync),
    pieces: usize,
    threads: usize,
    /// The next unclaimed piece (values past `pieces` mean "none left").
    next: AtomicUsize,
    /// Slots handed out so far (the caller holds 0). Changed under the registry lock only.
    slots: AtomicUsize,
    /// Helpers registered on the job. Changed under the registry lock only; read lock-free
    /// by the caller's wait.
    active: AtomicUsize,
    /// The first panic a helper caught.
    panic: Mutex<Option<Payload>>,
}

impl Job<'_> {
    /// Whether a helper arriving now would find a piece and a free slot.
    fn wants_helper(&self) -> bool {
        self.next.load(Ordering::Relaxed) < self.pieces
            && self.slots.load(Ordering::Relaxed) < self.threads
    }

    /// Claims and runs pieces until none are left. A panicking piece stops the claiming
    /// (the caller re-raises it, so the remaining output is moot) and is returned.
    fn work(&self, slot: usize) -> Option<Payload> {
        loop {
            let piece = self.next.fetch_add(1, Ordering::Relaxed);
            if piece >= self.pieces {
                return None;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (self.f)(piece, slot))) {
                self.next.fetch_max(self.pieces, Ordering::Relaxed);
                return Some(p);
            }
        }
    }
}

/// A published job: a pointer to a caller's stack frame with the closure's lifetime erased.
#[derive(Clone, Copy)]
struct JobRef(NonNull<Job<'static>>);

// SAFETY: a `JobRef` is only dereferenced under the protocol in the module doc, while the job
// it points to is alive; `Job` itself is `Sync` (atomics, a mutex, a `Sync` closure), so using
// it from another thread is sound.
unsafe impl Send for JobRef {}

impl JobRef {
    fn new(job: &Job<'_>) -> Self {
        Self(NonNull::from(job).cast())
    }

    fn is(self, job: &Job<'_>) -> bool {
        std::ptr::addr_eq(self.0.as_ptr(), job)
    }

    /// The job, for as long as the caller of this function can prove it is alive.
    ///
    /// # Safety
    /// The job must still be published (the registry lock held) or the calling helper must be
    /// registered on it (see the module doc), for the whole lifetime `'r`.
    unsafe fn get<'r>(self) -> &'r Job<'r> {
        // SAFETY: the caller guarantees the job is alive for `'r`; `Job` is covariant in its
        // lifetime, so shortening `'static` to `'r` only narrows what the closure may borrow.
        unsafe { self.0.as_ref() }
    }
}

#[derive(Default)]
struct State {
    jobs: Vec<JobRef>,
    /// Helpers waiting on `Shared::work`: only then does a publisher pay for a notify.
    parked: usize,
    /// Callers blocked on `Shared::done`: only then does a leaving helper notify.
    waiters: usize,
    /// Holds taken ([`Team::hold`]): while any is, idle helpers keep lingering instead of
    /// parking, so the next job of an inference in progress finds them awake.
    holds: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    /// Bumped on every publish, so a lingering helper polls one word instead of the lock.
    epoch: AtomicUsize,
    linger: Duration,
}

/// The team: the shared state plus its helper threads (joined on drop).
pub(crate) struct Team {
    shared: Arc<Shared>,
    handles: Vec<crate::sync::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTeam")
            .field("helpers", &self.handles.len())
            .field("linger", &self.shared.linger)
            .finish()
    }
}

impl Team {
    /// Starts up to `helpers` helper threads; a thread that cannot be started is logged and
    /// left out (the team is smaller, never wrong).
    pub(crate) fn new(helpers: usize, linger: Duration) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            epoch: AtomicUsize::new(0),
            linger,
        });
        let mut handles = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let s = Arc::clone(&shared);
            match spawn_helper(i, move || helper_loop(&s)) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::warn!(target: "aegis_cuda", error = %e, "host team helper not started; the team is smaller");
                    break;
                }
            }
        }
        Self { shared, handles }
    }

    /// The caller plus the helpers.
    pub(crate) fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    pub(crate) fn parallel_for(
        &self,
        pieces: usize,
        threads: usize,
        f: &(dyn Fn(usize, usize) + Sync),
    ) {
        let threads = threads.min(self.threads()).min(pieces);
        if threads <= 1 {
            for piece in 0..pieces {
                f(piece, 0);
            }
            return;
        }
        let job = Job {
            f,
            pieces,
            threads,
            next: AtomicUsize::new(0),
            slots: AtomicUsize::new(1),
            active: AtomicUsize::new(0),
            panic: Mutex::new(None),
        };
        let sh = &*self.shared;
        let wake = {
            let mut st = lock(&sh.state);
            st.jobs.push(JobRef::new(&job));
            sh.epoch.fetch_add(1, Ordering::Release);
            st.parked.min(threads - 1)
        };
        for _ in 0..wake {
            sh.work.notify_one();
        }
        // Retracted on every path out of here, an unwind included: the job borrows this frame.
        let published = Published {
            team: self,
            job: &job,
        };
        let mine = job.work(0);
        drop(published);
        if let Some(p) = mine {
            resume_unwind(p);
        }
        let theirs = lock(&job.panic).take();
        if let Some(p) = theirs {
            resume_unwind(p);
        }
    }

    /// Keeps idle helpers polling for jobs (lingering) instead of parking until
    /// [`Team::release`], and wakes the parked ones now: for the span of an inference, whose
    /// serial stretches (a pad, a small op, the stream's own hand-offs) can outlast one
    /// linger. A parked helper costs the next job a wake-up (30-50 us on this VM), taken
    /// by the caller as a piece it runs alone.
    pub(crate) fn hold(&self) {
        let sh = &*self.shared;
        let wake = {
            let mut st = lock(&sh.state);
            st.holds += 1;
            st.parked > 0
        };
        if wake {
            sh.work.notify_all();
        }
    }

    /// Ends one [`Team::hold`]; helpers park after their next linger once none is left.
    pub(crate) fn release(&self) {
        let mut st = lock(&self.shared.state);
        st.holds = st.holds.saturating_sub(1);
    }

    /// Helpers parked now.
    pub(crate) fn parked(&self) -> usize {
        lock(&self.shared.state).parked
    }

    /// Removes `job` from the registry and waits for the helpers registered on it.
    fn retract(&self, job: &Job<'_>) {
        let sh = &*self.shared;
        let mut st = lock(&sh.state);
        st.jobs.retain(|j| !j.is(job));
        if job.active.load(Ordering::Acquire) == 0 {
            return;
        }
        // A registered helper is running a piece about as long as ours: poll a little before
        // paying for a sleep and a wake-up.
        if !cfg!(loom) {
            drop(st);
            let until = std::time::Instant::now() + RETRACT_POLL;
            if crate::sync::poll_until(until, 16, || job.active.load(Ordering::Acquire) == 0) {
                return;
            }
            st = lock(&sh.state);
        }
        while job.active.load(Ordering::Acquire) > 0 {
            st.waiters += 1;
            st = wait(&sh.done, st);
            st.waiters -= 1;
        }
    }
}

/// A published job: retracts it (and waits for its helpers) when dropped.
struct Published<'t, 'j> {
    team: &'t Team,
    job: &'t Job<'j>,
}

impl Drop for Published<'_, '_> {
    fn drop(&mut self) {
        self.team.retract(self.job);
    }
}

/// How long a caller polls for its helpers to finish before it sleeps.
const RETRACT_POLL: Duration = Duration::from_micros(200);

impl Drop for Team {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.work.notify_all();
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                tracing::error!(target: "aegis_cuda", "host team helper died");
            }
        }
    }
}

fn helper_loop(sh: &Shared) {
    let mut st = lock(&sh.state);
    // Whether the helper already lingered since its last piece of work.
    let mut lingered = false;
    loop {
        if st.shutdown {
            return;
        }
        if let Some(&jr) = st.jobs.iter().find(|j| {
            // SAFETY: the registry lock is held and the job is published (module doc, (a)).
            unsafe { j.get() }.wants_helper()
        }) {
            // SAFETY: published and the lock held now; registering below keeps it alive
            // until our decrement of `active` (module doc, (b)).
            let job = unsafe { jr.get() };
            job.active.fetch_add(1, Ordering::Relaxed);
            let slot = job.slots.fetch_add(1, Ordering::Relaxed);
            drop(st);
            if let Some(p) = job.work(slot) {
                lock(&job.panic).get_or_insert(p);
            }
            st = lock(&sh.state);
            // The last access to the job: after it the caller may return.
            job.active.fetch_sub(1, Ordering::Release);
            if st.waiters > 0 {
                sh.done.notify_all();
            }
            lingered = false;
            continue;
        }
        // Under a hold the helper lingers again and again: an inference is in progress.
        if (!lingered || st.holds > 0) && !sh.linger.is_zero() && !cfg!(loom) {
            let seen = sh.epoch.load(Ordering::Acquire);
            drop(st);
            let until = std::time::Instant::now() + sh.linger;
            crate::sync::poll_until(until, 64, || sh.epoch.load(Ordering::Acquire) != seen);
            st = lock(&sh.state);
            lingered = true;
            continue;
        }
        st.parked += 1;
        st = wait(&sh.work, st);
        st.parked -= 1;
    }
}

#[cfg(not(loom))]
fn spawn_helper(
    i: usize,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("aegis-team-{}", i + 1))
        .spawn(f)
}

#[cfg(loom)]
fn spawn_helper(
    _i: usize,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<loom::thread::JoinHandle<()>> {
    Ok(loom::thread::spawn(f))
}
