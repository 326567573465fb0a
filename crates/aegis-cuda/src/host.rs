//! The host backend: streams are asynchronous in-order queues served by worker threads,
//! events are generation counters with a condition variable, memory is real aligned memory
//! with a capacity. CUDA's semantics exactly, so a missing wait is a real, observable bug.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::device::{BackendKind, DeviceInfo, FaultRule, FaultTrigger, HostDeviceOptions};
use crate::error::{CallSite, CudaError, InjectedFaultKind, Result};
use crate::sync::{lock, wait, Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// A label for enqueued work: static for built-in items, owned for kernel names.
pub type Label = Cow<'static, str>;

/// Work a host stream runs: a closure returning Layer 1's result.
pub type HostWork = Box<dyn FnOnce() -> Result<()> + Send + 'static>;

#[derive(Debug)]
struct InstalledRule {
    rule: FaultRule,
    /// Device item counter when installed (for `NthItem`).
    base: u64,
    /// Label matches seen so far (for `Label`).
    seen: u64,
}

/// Shared state of one host device.
#[derive(Debug)]
pub(crate) struct HostDevice {
    options: HostDeviceOptions,
    used: AtomicU64,
    next_id: AtomicU64,
    items: AtomicU64,
    has_rules: AtomicBool,
    rules: Mutex<Vec<InstalledRule>>,
    poisoned: AtomicBool,
    poison: Mutex<Option<CudaError>>,
}

impl HostDevice {
    pub(crate) fn new(options: HostDeviceOptions) -> Self {
        Self {
            options,
            used: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            items: AtomicU64::new(0),
            has_rules: AtomicBool::new(false),
            rules: Mutex::new(Vec::new()),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
        }
    }

    pub(crate) fn options(&self) -> &HostDeviceOptions {
        &self.options
    }

    pub(crate) fn info(&self) -> DeviceInfo {
        DeviceInfo {
            backend: BackendKind::Host,
            ordinal: 0,
            name: "AegisRT host backend".to_owned(),
            total_memory: self.options.capacity,
            compute_capability: None,
            parallelism: self.options.threads.max(1),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.options.capacity
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn inject(&self, rule: FaultRule) {
        let base = self.items.load(Ordering::SeqCst);
        lock(&self.rules).push(InstalledRule {
            rule,
            base,
            seen: 0,
        });
        self.has_rules.store(true, Ordering::SeqCst);
    }

    pub(crate) fn poison_cause(&self) -> Option<CudaError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.poison).clone()
    }

    fn poison_with(&self, cause: CudaError) {
        let mut p = lock(&self.poison);
        if p.is_none() {
            tracing::error!(target: "aegis_cuda", error = %cause, "host device poisoned");
            *p = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// Fails with `DevicePoisoned` once a sticky fault has hit this device.
    #[track_caller]
    pub(crate) fn check_alive(&self, call: &'static str) -> Result<()> {
        match self.poison_cause() {
            None => Ok(()),
            Some(cause) => Err(CudaError::DevicePoisoned {
                call,
                site: CallSite::here(),
                device: 0,
                cause: cause.to_string(),
            }),
        }
    }

    /// Reserves `bytes` against the capacity with a compare-and-swap loop: never over-commits
    /// under contention and never retries past a refusal.
    #[track_caller]
    pub(crate) fn reserve(&self, call: &'static str, bytes: u64) -> Result<()> {
        let capacity = self.options.capacity;
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let next = cur.checked_add(bytes).filter(|n| *n <= capacity);
            let Some(next) = next else {
                return Err(CudaError::OutOfMemory {
                    call,
                    site: CallSite::here(),
                    requested: bytes,
                    free: capacity.saturating_sub(cur),
                    capacity,
                });
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    pub(crate) fn unreserve(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts an item at enqueue time and says whether an injected fault hits it.
    fn classify(&self, label: &str, is_task: bool) -> (u64, Option<InjectedFaultKind>) {
        let item = self.items.fetch_add(1, Ordering::SeqCst);
        if !self.has_rules.load(Ordering::SeqCst) {
            return (item, None);
        }
        let mut rules = lock(&self.rules);
        let mut hit = None;
        let mut fired = None;
        for (i, r) in rules.iter_mut().enumerate() {
            let matches = match &r.rule.trigger {
                FaultTrigger::NthItem(n) => item.checked_sub(r.base) == Some(*n),
                FaultTrigger::Label { label: l, n } => {
                    if is_task && l == label {
                        r.seen += 1;
                        r.seen - 1 == *n
                    } else {
                        false
                    }
                }
            };
            if matches {
                hit = Some(r.rule.kind);
                fired = Some(i);
                break;
            }
        }
        if let Some(i) = fired {
            rules.remove(i);
            if rules.is_empty() {
                self.has_rules.store(false, Ordering::SeqCst);
            }
        }
        (item, hit)
    }
}

/// Completion state of an event.
#[derive(Debug, Default)]
struct EventInner {
    /// Generation of the latest `record` call.
    recorded: u64,
    /// Highest generation whose record point the stream has passed.
    completed: u64,
    completed_at: Option<Instant>,
    /// Set when the record point was passed on a poisoned device.
    error: Option<CudaError>,
    /// Threads blocked on `cv`: `complete` pays for a notify (a syscall) only when some wait.
    waiters: usize,
}

#[derive(Debug)]
pub(crate) struct HostEvent {
    pub(crate) id: u64,
    pub(crate) device: Arc<HostDevice>,
    inner: Mutex<EventInner>,
    cv: Condvar,
}

impl HostEvent {
    pub(crate) fn new(device: Arc<HostDevice>) -> Self {
        Self {
            id: device.fresh_id(),
            device,
            inner: Mutex::new(EventInner::default()),
            cv: Condvar::new(),
        }
    }

    /// Blocks until the latest record point at call time has been passed.
    pub(crate) fn synchronize(&self) -> Result<()> {
        let mut g = lock(&self.inner);
        let target = g.recorded;
        while g.completed < target {
            g.waiters += 1;
            g = wait(&self.cv, g);
            g.waiters -= 1;
        }
        match &g.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    pub(crate) fn query(&self) -> bool {
        let g = lock(&self.inner);
        g.completed >= g.recorded
    }

    pub(crate) fn completed_at(&self) -> Option<Instant> {
        let g = lock(&self.inner);
        if g.completed >= g.recorded {
            g.completed_at
        } else {
            None
        }
    }

    fn next_generation(&self) -> u64 {
        let mut g = lock(&self.inner);
        g.recorded += 1;
        g.recorded
    }

    fn current_generation(&self) -> u64 {
        lock(&self.inner).recorded
    }

    fn complete(&self, generation: u64, error: Option<CudaError>) {
        let mut g = lock(&self.inner);
        if generation > g.completed {
            g.completed = generation;
            g.completed_at = Some(Instant::now());
            g.error = error;
        }
        let waiters = g.waiters;
        drop(g);
        if waiters > 0 {
            self.cv.notify_all();
        }
    }

    fn wait_for(&self, generation: u64) {
        let mut g = lock(&self.inner);
        while g.completed < generation {
            g.waiters += 1;
            g = wait(&self.cv, g);
            g.waiters -= 1;
        }
    }
}

enum Work {
    Task {
        label: Label,
        f: HostWork,
        item: u64,
        fault: Option<InjectedFaultKind>,
    },
    Record {
        event: Arc<HostEvent>,
        generation: u64,
    },
    Wait {
        event: Arc<HostEvent>,
        generation: u64,
    },
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Work>,
    enqueued: u64,
    completed: u64,
    shutdown: bool,
    /// First error since the last synchronise (CUDA reports asynchronous errors at the next
    /// synchronising call).
    error: Option<CudaError>,
    /// The worker is parked on `work_ready`: only then does an enqueue pay for a wake-up.
    worker_waiting: bool,
    /// Callers blocked in `synchronize`: only then does the worker pay for a notify.
    sync_waiters: usize,
}

struct StreamShared {
    id: u64,
    device: Arc<HostDevice>,
    queue: Mutex<Queue>,
    work_ready: Condvar,
    idle: Condvar,
    /// `Queue::enqueued`, mirrored (written under the queue lock) so a lingering worker can
    /// poll for new work without taking the lock.
    pushed: AtomicU64,
}

/// A host stream: an in-order queue drained by its own worker thread.
pub(crate) struct HostStream {
    shared: Arc<StreamShared>,
    worker: Option<crate::sync::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HostStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStream")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl HostStream {
    #[track_caller]
    pub(crate) fn new(device: Arc<HostDevice>) -> Result<Self> {
        let site = CallSite::here();
        device.check_alive("Stream::new")?;
        let shared = Arc::new(StreamShared {
            id: device.fresh_id(),
            device,
            queue: Mutex::new(Queue::default()),
            work_ready: Condvar::new(),
            idle: Condvar::new(),
            pushed: AtomicU64::new(0),
        });
        let s2 = Arc::clone(&shared);
        let worker =
            spawn_worker(shared.id, move || worker_loop(&s2)).map_err(|e| CudaError::Spawn {
                call: "Stream::new",
                site,
                reason: e.to_string(),
            })?;
        Ok(Self {
            shared,
            worker: Some(worker),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    pub(crate) fn device(&self) -> &Arc<HostDevice> {
        &self.shared.device
    }

    fn push(&self, work: Work) {
        let mut q = lock(&self.shared.queue);
        q.items.push_back(work);
        q.enqueued += 1;
        self.shared.pushed.store(q.enqueued, Ordering::Release);
        let wake = q.worker_waiting;
        drop(q);
        if wake {
            self.shared.work_ready.notify_one();
        }
    }

    #[track_caller]
    pub(crate) fn enqueue(&self, label: Label, f: HostWork) -> Result<()> {
        self.shared.device.check_alive("Stream::enqueue")?;
        let (item, fault) = self.shared.device.classify(&label, true);
        self.push(Work::Task {
            label,
            f,
            item,
            fault,
        });
        Ok(())
    }

    #[track_caller]
    pub(crate) fn record(&self, event: &Arc<HostEvent>) -> Result<()> {
        self.shared.device.check_alive("Event::record")?;
        self.shared.device.classify("record", false);
        let generation = event.next_generation();
        self.push(Work::Record {
            event: Arc::clone(event),
            generation,
        });
        Ok(())
    }

    #[track_caller]
    pub(crate) fn wait_event(&self, event: &Arc<HostEvent>) -> Result<()> {
        self.shared.device.check_alive("Stream::wait_event")?;
        self.shared.device.classify("wait", false);
        // CUDA semantics: wait for the most recent record at the time of this call; an event
        // never recorded is already complete.
        let generation = event.current_generation();
        if generation > 0 {
            self.push(Work::Wait {
                event: Arc::clone(event),
                generation,
            });
        }
        Ok(())
    }

    /// Items enqueued but not finished.
    pub(crate) fn pending(&self) -> u64 {
        let q = lock(&self.shared.queue);
        q.enqueued - q.completed
    }

    #[track_caller]
    pub(crate) fn synchronize(&self) -> Result<()> {
        let mut q = lock(&self.shared.queue);
        let target = q.enqueued;
        while q.completed < target {
            q.sync_waiters += 1;
            q = wait(&self.shared.idle, q);
            q.sync_waiters -= 1;
        }
        let err = q.error.take();
        drop(q);
        if let Some(e) = err {
            return Err(e);
        }
        self.shared.device.check_alive("Stream::synchronize")
    }
}

impl Drop for HostStream {
    fn drop(&mut self) {
        // Drain: the worker exits only once the queue is empty, so pending work still runs
        // (and the memory it holds stays alive through its own handles).
        lock(&self.shared.queue).shutdown = true;
        self.shared.work_ready.notify_all();
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                tracing::error!(target: "aegis_cuda", stream = self.shared.id, "stream worker died");
            }
        }
        if let Some(e) = lock(&self.shared.queue).error.take() {
            // Nobody can synchronise any more: log rather than drop it silently.
            tracing::error!(target: "aegis_cuda", stream = self.shared.id, error = %e, "error pending on dropped stream");
        }
    }
}

#[cfg(not(loom))]
fn spawn_worker(
    id: u64,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("aegis-host-stream-{id}"))
        .spawn(f)
}

#[cfg(loom)]
fn spawn_worker(
    _id: u64,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<loom::thread::JoinHandle<()>> {
    Ok(loom::thread::spawn(f))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn worker_loop(s: &StreamShared) {
    // Items are taken in batches (one lock per batch, not per item) and completion is
    // published once per batch: in-order semantics are unchanged, and an idle stream's
    // enqueue→run latency is one wake-up.
    let mut batch: VecDeque<Work> = VecDeque::new();
    // Pushes seen when the last batch was taken.
    let mut taken = None;
    loop {
        let window = s.device.options.stream_linger;
        if let (false, false, Some(seen)) = (cfg!(loom), window.is_zero(), taken) {
            linger(s, window, seen);
        }
        {
            let mut q = lock(&s.queue);
            while q.items.is_empty() {
                if q.shutdown {
                    return;
                }
                q.worker_waiting = true;
                q = wait(&s.work_ready, q);
                q.worker_waiting = false;
            }
            std::mem::swap(&mut q.items, &mut batch);
            taken = Some(q.enqueued);
        }
        let n = batch.len() as u64;
        let mut first_error = None;
        while let Some(work) = batch.pop_front() {
            if let Some(e) = run_item(s, work) {
                first_error.get_or_insert(e);
            }
        }
        let mut q = lock(&s.queue);
        q.completed += n;
        if let Some(e) = first_error {
            q.error.get_or_insert(e);
        }
        let notify = q.sync_waiters > 0;
        drop(q);
        if notify {
            s.idle.notify_all();
        }
    }
}

/// Polls for new work for up to `window` before the worker parks: see
/// [`HostDeviceOptions::stream_linger`]. Reads the push counter, not the queue (no lock), spins
/// a little between looks and yields the core now and then (on a busy machine the enqueuer
/// needs it). `seen` is the push count when the last batch was taken.
fn linger(s: &StreamShared, window: std::time::Duration, seen: u64) {
    let until = Instant::now() + window;
    crate::sync::poll_until(until, 64, || s.pushed.load(Ordering::Acquire) != seen);
}

fn run_item(s: &StreamShared, work: Work) -> Option<CudaError> {
    let dev = &s.device;
    match work {
        Work::Task {
            label,
            f,
            item,
            fault,
        } => {
            if let Some(cause) = dev.poison_cause() {
                // A poisoned context runs nothing more; the work is dropped (its closure and
                // the buffers it holds are released) and the stream reports the poison.
                drop(f);
                return Some(CudaError::DevicePoisoned {
                    call: "stream work",
                    site: CallSite::here(),
                    device: 0,
                    cause: cause.to_string(),
                });
            }
            if let Some(kind) = fault {
                drop(f);
                let err = CudaError::InjectedFault {
                    label: label.into_owned(),
                    stream: s.id,
                    item,
                    kind,
                };
                if kind == InjectedFaultKind::Sticky {
                    dev.poison_with(err.clone());
                }
                return Some(err);
            }
            match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(p) => Some(CudaError::WorkPanicked {
                    label: label.into_owned(),
                    stream: s.id,
                    message: panic_message(p.as_ref()),
                }),
            }
        }
        Work::Record { event, generation } => {
            // Always complete the event, even when poisoned, so no waiter hangs; the error
            // travels with it instead.
            event.complete(generation, dev.poison_cause());
            None
        }
        Work::Wait { event, generation } => {
            event.wait_for(generation);
            None
        }
    }
}
