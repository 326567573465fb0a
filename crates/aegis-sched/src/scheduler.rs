//! The scheduler: submission, the orchestration loop, dispatch, completion, stop.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use aegis_cuda::sync::{
    lock, Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering,
};
use aegis_cuda::Event;

use crate::decision::{Action, Decision, DecisionLog};
use crate::error::{
    CancelReason, RejectReason, RequestError, SchedError, Slack, SubmitError, SubmitErrorKind,
};
use crate::estimate::{decayed, Estimates, ModelEstimate};
use crate::policy::ModelName;
use crate::policy::{
    add_saturating, Candidate, CandidateQueue, Choice, Feedback, InFlight, PolicyContext,
    SchedulingPolicy,
};
use crate::pool::{StreamPool, StreamPreference};
use crate::primitives::{BoundedInbox, CompletionCell, PushRefusal, StopMode};
use crate::request::{
    Callback, Completed, Completer, Outcome, Priority, Request, RequestHandle, RequestId, TenantId,
};
use crate::workload::{Collect, Workload};

const TARGET: &str = "aegis_sched";

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Requests accepted but not yet dispatched, at most (≥ 1). Past it, `submit` returns
    /// `QueueFull`.
    pub queue_capacity: usize,
    /// Decisions kept by [`Scheduler::decisions`] (0 disables the log).
    pub decision_log_capacity: usize,
    /// EWMA weight of a new measurement in the per-model estimates, in (0, 1].
    pub estimate_alpha: f64,
    /// Admission bound = mean + `deviation_factor` × mean deviation (≥ 0).
    pub deviation_factor: f64,
    /// After its last event, the loop polls (yielding the core) this long before blocking,
    /// when nothing runs or a running request is expected to finish within this window:
    /// trades a little CPU right after activity for low submit→dispatch latency and fewer
    /// wake-ups. Idle, it blocks. Zero disables polling.
    pub idle_spin: Duration,
    /// Requests with at least this priority prefer the pool's highest-priority streams.
    pub urgent_priority: Priority,
    /// Let a submitter that finds the loop idle run the dispatch step itself (admit, ask the
    /// policy, enqueue on a free stream) instead of waking the scheduling thread: removes a
    /// thread wake-up from submit→dispatch. Only dispatches run there; every outcome (a
    /// rejection, a failure, a completion) is still delivered on the scheduling thread, and
    /// the loop state is shared under one lock, so decisions stay serial and deterministic.
    /// Cost: the workload's `enqueue` runs on the submitting thread (`submit` stays
    /// non-blocking: it never waits for a lock held by someone else). Off by default.
    pub inline_dispatch: bool,
    /// Name of the scheduling thread.
    pub thread_name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            decision_log_capacity: 4096,
            estimate_alpha: 0.125,
            deviation_factor: 3.0,
            idle_spin: Duration::from_micros(20),
            urgent_priority: Priority::HIGH,
            inline_dispatch: false,
            thread_name: "aegis-sched".into(),
        }
    }
}

impl SchedulerConfig {
    fn validate(&self) -> Result<(), SchedError> {
        if self.queue_capacity == 0 {
            return Err(SchedError::InvalidConfig {
                field: "queue_capacity",
                value: "0".into(),
                reason: "at least 1",
            });
        }
        if !(self.estimate_alpha > 0.0 && self.estimate_alpha <= 1.0) {
            return Err(SchedError::InvalidConfig {
                field: "estimate_alpha",
                value: self.estimate_alpha.to_string(),
                reason: "in (0, 1]",
            });
        }
        if !(self.deviation_factor >= 0.0 && self.deviation_factor.is_finite()) {
            return Err(SchedError::InvalidConfig {
                field: "deviation_factor",
                value: self.deviation_factor.to_string(),
                reason: "finite and ≥ 0",
            });
        }
        Ok(())
    }
}

/// Counters since construction. At rest (after `stop`), every accepted request is in exactly
/// one of `completed`, `failed`, `rejected`, `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedStats {
    /// Submissions accepted.
    pub accepted: u64,
    /// Submissions refused as `QueueFull`.
    pub refused_full: u64,
    /// Submissions refused as invalid or after stop.
    pub refused_invalid: u64,
    /// Requests dispatched on a stream.
    pub dispatched: u64,
    /// Requests that produced outputs.
    pub completed: u64,
    /// Dispatched requests that failed (workload or device error).
    pub failed: u64,
    /// Requests rejected by the policy before dispatch.
    pub rejected: u64,
    /// Requests cancelled while queued.
    pub cancelled: u64,
    /// Requests accepted and not yet dispatched, rejected or cancelled.
    pub queued: usize,
    /// Requests running now.
    pub in_flight: usize,
}

impl SchedStats {
    /// Accepted requests that have not received their outcome yet.
    pub fn outstanding(&self) -> u64 {
        self.accepted
            .saturating_sub(self.completed + self.failed + self.rejected + self.cancelled)
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_full: AtomicU64,
    refused_invalid: AtomicU64,
    dispatched: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    in_flight: AtomicUsize,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Submission<I, O> {
    id: RequestId,
    request: Request<I, O>,
    completer: Completer<O>,
    submitted_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct CompletionMsg {
    stream: usize,
    id: RequestId,
}

type Inbox<I, O> = BoundedInbox<Submission<I, O>, CompletionMsg>;

/// Posts a request's completion when the stream reaches it, or when the stream drops it
/// unrun (a poisoned device, or an injected fault on this very item, releases queued work
/// without running it): either way the loop hears of the request exactly once, and
/// `finish` then reports the stream's error, so a dispatched request never hangs.
struct CompletionMarker<I, O> {
    inbox: Option<Arc<Inbox<I, O>>>,
    msg: CompletionMsg,
}

impl<I, O> Drop for CompletionMarker<I, O> {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            inbox.push_completion(self.msg);
        }
    }
}

struct Shared<I, O> {
    inbox: Arc<Inbox<I, O>>,
    log: DecisionLog,
    estimates: Mutex<Estimates>,
    counters: Counters,
    known_tenants: Option<Vec<TenantId>>,
    policy_name: &'static str,
    pool: Arc<StreamPool>,
}

enum Lifecycle {
    Ready,
    Running(aegis_cuda::sync::thread::JoinHandle<()>),
    Stopped,
}

/// The loop state, shared by the scheduling thread and (with `inline_dispatch`) submitters.
type Core<I, O> = Arc<Mutex<LoopState<I, O>>>;

/// Locks `m` if nobody holds it (ignoring poisoning, like `lock`).
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The scheduler. See the crate docs for the model.
///
/// `I`/`O` are the inputs and outputs of the [`Workload`]s it dispatches.
pub struct Scheduler<I: Send + 'static, O: Send + 'static> {
    shared: Arc<Shared<I, O>>,
    core: Core<I, O>,
    lifecycle: Mutex<Lifecycle>,
    /// Submitters may run the dispatch step (set by `start` when configured).
    inline: AtomicBool,
    inline_configured: bool,
    thread_name: String,
}

impl<I: Send + 'static, O: Send + 'static> std::fmt::Debug for Scheduler<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("policy", &self.shared.policy_name)
            .field("pool", &self.shared.pool)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<I: Send + 'static, O: Send + 'static> Scheduler<I, O> {
    /// Builds a scheduler (not running yet: see [`Self::start`]; submissions made before are
    /// queued).
    pub fn new(
        policy: impl SchedulingPolicy,
        pool: StreamPool,
        config: SchedulerConfig,
    ) -> Result<Self, SchedError> {
        config.validate()?;
        let events = (0..pool.len())
            .map(|_| Ok((Event::new(pool.device())?, Event::new(pool.device())?)))
            .collect::<Result<Vec<_>, SchedError>>()?;
        let known_tenants = policy.known_tenants().map(|mut v| {
            v.sort();
            v.dedup();
            v
        });
        let pool = Arc::new(pool);
        let shared = Arc::new(Shared {
            inbox: Arc::new(BoundedInbox::new(config.queue_capacity)),
            log: DecisionLog::new(config.decision_log_capacity),
            estimates: Mutex::new(Estimates::new(
                config.estimate_alpha,
                config.deviation_factor,
            )),
            counters: Counters::default(),
            known_tenants,
            policy_name: policy.name(),
            pool: Arc::clone(&pool),
        });
        let n = pool.len();
        let state = LoopState {
            shared: Arc::clone(&shared),
            policy: Box::new(policy),
            pool,
            events,
            queue: CandidateQueue::new(),
            payloads: VecDeque::new(),
            running: (0..n).map(|_| None).collect(),
            in_flight: Vec::with_capacity(n),
            released: 0,
            idle_spin: config.idle_spin,
            urgent: config.urgent_priority,
            overhead: (Duration::ZERO, Instant::now()),
            subs: VecDeque::new(),
            comps: Vec::new(),
            recheck: None,
            deferred: Vec::new(),
            inline: false,
            stopped_inline: false,
            done: false,
        };
        Ok(Self {
            shared,
            core: Arc::new(Mutex::new(state)),
            lifecycle: Mutex::new(Lifecycle::Ready),
            inline: AtomicBool::new(false),
            inline_configured: config.inline_dispatch,
            thread_name: config.thread_name,
        })
    }

    /// Spawns the orchestration loop on its own thread.
    pub fn start(&self) -> Result<(), SchedError> {
        let mut lc = lock(&self.lifecycle);
        if !matches!(*lc, Lifecycle::Ready) {
            return Err(SchedError::AlreadyStarted);
        }
        let core = Arc::clone(&self.core);
        let spawned = aegis_cuda::sync::thread::Builder::new()
            .name(self.thread_name.clone())
            .spawn(move || drive(&core));
        match spawned {
            Ok(h) => {
                *lc = Lifecycle::Running(h);
                self.inline.store(self.inline_configured, Ordering::Release);
                Ok(())
            }
            // The closure never ran: the scheduler stays startable.
            Err(e) => Err(SchedError::Spawn {
                reason: e.to_string(),
            }),
        }
    }

    /// Submits a request; its outcome arrives through the returned handle. Never blocks.
    pub fn submit(&self, request: Request<I, O>) -> Result<RequestHandle<O>, SubmitError<I, O>> {
        let cell = Arc::new(CompletionCell::new());
        let c2 = Arc::clone(&cell);
        let id = self.push(request, move |id| Completer::from_cell(id, c2))?;
        Ok(RequestHandle::new(id, cell))
    }

    /// Submits a request; `callback` receives its outcome exactly once, on the scheduling
    /// thread (keep it short). Never blocks. On refusal the callback is dropped uncalled and the
    /// request comes back in the error.
    pub fn submit_with(
        &self,
        request: Request<I, O>,
        callback: impl FnOnce(Outcome<O>) + Send + 'static,
    ) -> Result<RequestId, SubmitError<I, O>> {
        let cb: Callback<O> = Box::new(callback);
        self.push(request, move |id| Completer::callback(id, cb))
    }

    fn push(
        &self,
        request: Request<I, O>,
        completer: impl FnOnce(RequestId) -> Completer<O>,
    ) -> Result<RequestId, SubmitError<I, O>> {
        let _span = tracing::trace_span!(target: TARGET, "sched.submit").entered();
        let now = Instant::now();
        if let Some(d) = request.deadline {
            if d <= now {
                return Err(self.refuse(request, SubmitErrorKind::DeadlineInPast { late: now - d }));
            }
        }
        if let Some(known) = &self.shared.known_tenants {
            if known.binary_search(&request.tenant).is_err() {
                let tenant = request.tenant;
                return Err(self.refuse(request, SubmitErrorKind::UnknownTenant { tenant }));
            }
        }
        let accepted = &self.shared.counters.accepted;
        let pushed = self.shared.inbox.try_push_quiet(request, |request, seq| {
            // Counted under the inbox lock, before the loop can see (and finish) the request:
            // counters never show an outcome for a request not yet counted as accepted.
            bump(accepted);
            let id = RequestId(seq);
            Submission {
                id,
                request,
                completer: completer(id),
                submitted_at: now,
            }
        });
        match pushed {
            Ok((seq, asleep)) => {
                tracing::trace!(name: "sched.submitted", target: TARGET, request = seq, "submitted");
                let mut wake = asleep;
                // Only worth it when the loop is asleep (an awake loop picks the submission up
                // at once) and a stream is free (else nothing can be dispatched now, and
                // taking the state lock would only contend with the loop).
                if asleep
                    && self.inline.load(Ordering::Acquire)
                    && self.shared.pool.free_count() > 0
                {
                    // Never waits: if the loop (or another submitter) holds the state, it will
                    // see this submission in the inbox once woken.
                    if let Some(mut st) = try_lock(&self.core) {
                        wake = st.inline_round_guarded();
                    }
                }
                if wake {
                    self.shared.inbox.poke();
                }
                Ok(RequestId(seq))
            }
            Err((request, PushRefusal::Full { capacity })) => {
                Err(self.refuse(request, SubmitErrorKind::QueueFull { capacity }))
            }
            Err((request, PushRefusal::Closed)) => {
                Err(self.refuse(request, SubmitErrorKind::Stopped))
            }
        }
    }

    fn refuse(&self, request: Request<I, O>, kind: SubmitErrorKind) -> SubmitError<I, O> {
        let c = &self.shared.counters;
        if matches!(kind, SubmitErrorKind::QueueFull { .. }) {
            bump(&c.refused_full);
        } else {
            bump(&c.refused_invalid);
        }
        tracing::debug!(
            name: "sched.refused", target: TARGET,
            event = "refused",
            model = request.workload.model_id(),
            tenant = request.tenant.0,
            priority = request.priority.0,
            reason = %kind,
            "submission refused"
        );
        self.shared.log.push(Decision {
            seq: 0,
            at: Instant::now(),
            policy: self.shared.policy_name,
            request: RequestId(u64::MAX),
            model: ModelName::from(request.workload.model_id()),
            tenant: request.tenant,
            priority: request.priority,
            deadline: request.deadline,
            slack: None,
            estimate: Duration::ZERO,
            candidates: 0,
            queue_depth: self.shared.inbox.queued(),
            action: Action::Refused(kind.clone()),
        });
        SubmitError {
            kind,
            request: Box::new(request),
        }
    }

    /// Stops the scheduler: no new submissions; queued requests are run (`Drain`) or
    /// completed with `Cancelled` (`Cancel`); in-flight requests finish. Returns when every
    /// accepted request has its outcome. Idempotent; a scheduler never started runs its loop
    /// on the calling thread to do this.
    pub fn stop(&self, mode: StopMode) -> SchedStats {
        self.shared.inbox.close(mode);
        let mut lc = lock(&self.lifecycle);
        match std::mem::replace(&mut *lc, Lifecycle::Stopped) {
            Lifecycle::Ready => drive(&self.core),
            // Called from a completion callback (on the scheduling thread itself, e.g. a callback
            // dropping the last handle to the scheduler): joining would deadlock. The inbox is
            // closed, so the loop finishes the remaining work and exits on its own.
            Lifecycle::Running(h)
                if h.thread().id() == aegis_cuda::sync::thread::current().id() => {}
            Lifecycle::Running(h) => {
                if h.join().is_err() {
                    tracing::error!(target: TARGET, "scheduling thread panicked outside its guard");
                }
            }
            Lifecycle::Stopped => {}
        }
        drop(lc);
        self.stats()
    }

    /// The latest decisions (bounded by `decision_log_capacity`), oldest first.
    pub fn decisions(&self) -> Vec<Decision> {
        self.shared.log.snapshot()
    }

    /// Counters.
    pub fn stats(&self) -> SchedStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SchedStats {
            accepted: l(&c.accepted),
            refused_full: l(&c.refused_full),
            refused_invalid: l(&c.refused_invalid),
            dispatched: l(&c.dispatched),
            completed: l(&c.completed),
            failed: l(&c.failed),
            rejected: l(&c.rejected),
            cancelled: l(&c.cancelled),
            queued: self.shared.inbox.queued(),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    /// The current estimate for `model`, once a request for it has been seen.
    pub fn estimate(&self, model: &str) -> Option<ModelEstimate> {
        lock(&self.shared.estimates).get(model)
    }

    /// All per-model estimates, by model id.
    pub fn estimates(&self) -> Vec<ModelEstimate> {
        lock(&self.shared.estimates).all()
    }

    /// Measured per-request overhead beyond device time (dispatch, completion hop, collect):
    /// mean plus `deviation_factor` deviations, as policies see it.
    pub fn overhead_estimate(&self) -> Duration {
        lock(&self.shared.estimates).overhead()
    }

    /// The policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.shared.policy_name
    }

    /// The stream pool.
    pub fn pool(&self) -> &StreamPool {
        &self.shared.pool
    }
}

impl<I: Send + 'static, O: Send + 'static> Drop for Scheduler<I, O> {
    fn drop(&mut self) {
        self.stop(StopMode::Cancel);
    }
}

/// Everything the loop needs for a queued request besides its candidate metadata.
struct Payload<I, O> {
    workload: std::sync::Arc<dyn Workload<I, O>>,
    inputs: I,
    completer: Completer<O>,
    submitted_at: Instant,
}

struct Running<O> {
    candidate: Candidate,
    completer: Completer<O>,
    /// The collect closure, or the error `enqueue` returned (reported once the stream is
    /// quiet, so the stream is never reused with the failed request's work still pending).
    pending: Result<Collect<O>, RequestError>,
    dispatched_at: Instant,
    queued_for: Duration,
    span: tracing::Span,
}

struct LoopState<I, O> {
    shared: Arc<Shared<I, O>>,
    policy: Box<dyn SchedulingPolicy>,
    pool: Arc<StreamPool>,
    events: Vec<(Event, Event)>,
    /// Queued candidates and, at the same indices, their payloads.
    queue: CandidateQueue,
    payloads: VecDeque<Payload<I, O>>,
    running: Vec<Option<Running<O>>>,
    in_flight: Vec<InFlight>,
    /// Queue places freed since the last inbox take.
    released: usize,
    idle_spin: Duration,
    urgent: Priority,
    /// Conservative per-request overhead and when it was last measured (it decays without
    /// samples: see `estimate::decayed`).
    overhead: (Duration, Instant),
    /// Inbox take buffers (kept to reuse their allocations).
    subs: VecDeque<Submission<I, O>>,
    comps: Vec<CompletionMsg>,
    /// When the policy asked to be asked again.
    recheck: Option<Instant>,
    /// Outcomes decided during an inline round, delivered by the scheduling thread.
    deferred: Vec<(Completer<O>, Outcome<O>)>,
    /// True while a submitter runs an inline round.
    inline: bool,
    /// The inline round stopped at a choice only the scheduling thread may apply.
    stopped_inline: bool,
    /// The loop has exited (or failed): no more rounds.
    done: bool,
}

/// The scheduling loop: rounds under the state lock, waits outside it. Returns once stopped
/// and everything accepted has its outcome. If a round panics (a policy bug), every pending
/// request completes with `SchedulerFailed` so none hangs.
fn drive<I: Send + 'static, O: Send + 'static>(core: &Mutex<LoopState<I, O>>) {
    let inbox = Arc::clone(&lock(core).shared.inbox);
    loop {
        let (recheck, spin) = {
            let mut st = lock(core);
            if st.done {
                return;
            }
            match catch_unwind(AssertUnwindSafe(|| st.round(&inbox))) {
                Ok(true) => {
                    st.done = true;
                    tracing::debug!(target: TARGET, "scheduling loop exited");
                    return;
                }
                Ok(false) => {}
                Err(p) => {
                    tracing::error!(target: TARGET, panic = %panic_message(p.as_ref()), "scheduling loop panicked; failing all pending requests");
                    st.fail_all();
                    return;
                }
            }
            (st.recheck, st.spin_window())
        };
        spin_for(&inbox, spin, recheck);
        inbox.wait_news(recheck);
    }
}

/// Polls the inbox for up to `window` (yielding the core) before the caller blocks.
fn spin_for<I, O>(inbox: &Inbox<I, O>, window: Duration, recheck: Option<Instant>) {
    if window.is_zero() || inbox.has_news() {
        return;
    }
    let start = Instant::now();
    let mut end = add_saturating(start, window);
    if let Some(r) = recheck {
        end = end.min(r);
    }
    // Yield about every few µs: stream workers on a busy core are what we wait for.
    aegis_cuda::sync::poll_until(end, 64, || inbox.has_news());
}

/// Synchronises a stream whose completion marker has already run.
///
/// The host backend publishes an item's completion after the batch it ran in, so the marker's
/// message can reach the loop a moment before the stream reads as idle; blocking in
/// `synchronize` then costs a park and a wake-up (two context switches) for what is usually
/// a sub-microsecond gap. Poll `pending` briefly first (bounded: a few µs, yielding the core),
/// then synchronise, which returns at once and reports any stream error.
fn settle(stream: &aegis_cuda::Stream) -> Result<(), aegis_cuda::CudaError> {
    if !cfg!(loom) {
        let until = add_saturating(Instant::now(), SETTLE_POLL);
        aegis_cuda::sync::poll_until(until, 16, || stream.pending() == 0);
    }
    stream.synchronize()
}

/// How long [`settle`] polls before blocking.
const SETTLE_POLL: Duration = Duration::from_micros(20);

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<I: Send + 'static, O: Send + 'static> LoopState<I, O> {
    /// One round of the loop: take what the inbox holds, deliver deferred outcomes, finish
    /// completed requests, admit submissions, let the policy decide. True when the loop is
    /// done (stopped, nothing queued or running).
    fn round(&mut self, inbox: &Inbox<I, O>) -> bool {
        let released = std::mem::take(&mut self.released);
        let taken = inbox.take(released, &mut self.subs, &mut self.comps);
        self.flush_deferred();
        let mut comps = std::mem::take(&mut self.comps);
        for c in comps.drain(..) {
            self.finish(c);
        }
        self.comps = comps;
        self.admit_taken();
        if taken.stop == Some(StopMode::Cancel) {
            self.cancel_queued(CancelReason::Stopped);
        }
        let (next, stalled) = self.decide_all();
        self.recheck = next;
        if taken.stop.is_some() {
            if stalled {
                self.cancel_queued(CancelReason::DrainStalled);
            }
            self.flush_deferred();
            // The take above saw the inbox closed, so it also took every submission ever
            // accepted: nothing can arrive any more but completions of running requests.
            if self.queue.is_empty() && self.running_count() == 0 {
                // Give back the places of the requests finished in this round.
                inbox.release(std::mem::take(&mut self.released));
                return true;
            }
        }
        false
    }

    /// A submitter's round (`inline_dispatch`): admit new submissions and dispatch what the
    /// policy dispatches; anything else (a rejection, a deferred outcome, a new timer) is left
    /// to the scheduling thread. Returns whether that thread must be woken. A panic fails the
    /// scheduler like a panic in the loop.
    fn inline_round_guarded(&mut self) -> bool {
        if self.done {
            return false;
        }
        let inbox = Arc::clone(&self.shared.inbox);
        let released = std::mem::take(&mut self.released);
        if !inbox.take_submissions(released, &mut self.subs) {
            // Closed: the scheduling thread handles the stop.
            return true;
        }
        let before = self.recheck;
        self.inline = true;
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.admit_taken();
            self.decide_all()
        }));
        self.inline = false;
        match r {
            Ok((next, _)) => {
                self.recheck = next;
                let earlier = match (next, before) {
                    (Some(n), Some(b)) => n < b,
                    (Some(_), None) => true,
                    _ => false,
                };
                // A rejection is left queued for the loop (the policy repeats it there).
                let left = !self.deferred.is_empty() || self.stopped_inline;
                self.stopped_inline = false;
                earlier || left
            }
            Err(p) => {
                tracing::error!(target: TARGET, panic = %panic_message(p.as_ref()), "scheduling round panicked on a submitter; failing all pending requests");
                self.fail_all();
                true
            }
        }
    }

    /// How long the loop may poll before it blocks: right after activity with nothing in
    /// flight, or when a running request is expected to finish within the window (short
    /// requests: catching the completion awake saves its stream worker a wake-up syscall and
    /// this thread a park). While longer requests run, the stream workers need the cores more
    /// than we do, and their completions wake us anyway. Never under loom (unmodelled steps).
    fn spin_window(&self) -> Duration {
        if cfg!(loom) {
            return Duration::ZERO;
        }
        let Some(first) = self.in_flight.iter().map(|f| f.expected_end).min() else {
            return self.idle_spin;
        };
        let now = Instant::now();
        if first.saturating_duration_since(now) <= self.idle_spin {
            self.idle_spin
        } else {
            Duration::ZERO
        }
    }

    /// Delivers an outcome now, or (during an inline round) defers it to the scheduling
    /// thread: callbacks always run there.
    fn deliver(&mut self, completer: Completer<O>, outcome: Outcome<O>) {
        if self.inline {
            self.deferred.push((completer, outcome));
        } else {
            completer.complete(outcome);
        }
    }

    fn flush_deferred(&mut self) {
        for (c, o) in std::mem::take(&mut self.deferred) {
            c.complete(o);
        }
    }

    fn running_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Moves the taken submissions into the candidate queue.
    fn admit_taken(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        let mut subs = std::mem::take(&mut self.subs);
        let shared = Arc::clone(&self.shared);
        let mut est = lock(&shared.estimates);
        for s in subs.drain(..) {
            let w = &s.request.workload;
            let (model, estimate, bound) = est.lookup(w.model_id(), || w.initial_estimate());
            let cand = Candidate {
                id: s.id,
                model,
                priority: s.request.priority,
                deadline: s.request.deadline,
                tenant: s.request.tenant,
                enqueued_at: s.submitted_at,
                estimate,
                estimate_bound: bound,
            };
            match self.queue.push(cand) {
                Ok(()) => self.payloads.push_back(Payload {
                    workload: s.request.workload,
                    inputs: s.request.inputs,
                    completer: s.completer,
                    submitted_at: s.submitted_at,
                }),
                Err(c) => {
                    // Ids come from the inbox in order, so this cannot happen; if it did,
                    // binary search would break: refuse loudly instead of corrupting the queue.
                    tracing::error!(target: TARGET, request = c.id.0, "out-of-order request id; cancelling it");
                    self.released += 1;
                    bump(&self.shared.counters.cancelled);
                    self.deliver(
                        s.completer,
                        Err(RequestError::Cancelled {
                            id: c.id,
                            reason: CancelReason::Abandoned,
                        }),
                    );
                }
            }
        }
        drop(est);
        self.subs = subs;
    }

    /// Asks the policy until it waits. Returns its recheck time and whether it stalled
    /// (waits with free streams, no timer and nothing in flight).
    fn decide_all(&mut self) -> (Option<Instant>, bool) {
        loop {
            if self.queue.is_empty() {
                return (None, false);
            }
            let now = Instant::now();
            let free = self.pool.free_count();
            let overhead = decayed(
                self.overhead.0,
                now.saturating_duration_since(self.overhead.1),
            );
            let choice = {
                let ctx = PolicyContext {
                    now,
                    candidates: self.queue.view(),
                    free_streams: free,
                    streams: self.pool.len(),
                    in_flight: &self.in_flight,
                    overhead,
                };
                self.policy.decide(&ctx)
            };
            match choice {
                Choice::Wait { recheck_at } => {
                    let stalled = recheck_at.is_none() && free > 0 && self.in_flight.is_empty();
                    return (recheck_at, stalled);
                }
                Choice::Reject(_, _) if self.inline => {
                    // Outcomes are delivered on the scheduling thread: leave it to the loop,
                    // whose next call to the policy makes this choice again.
                    self.stopped_inline = true;
                    return (None, false);
                }
                Choice::Reject(id, reason) => {
                    let Some(i) = self.queue.view().position(id) else {
                        self.policy_error("rejected an unknown request", id);
                        return (None, false);
                    };
                    self.reject(i, reason, now);
                }
                Choice::Dispatch(id) => {
                    let Some(i) = self.queue.view().position(id) else {
                        self.policy_error("dispatched an unknown request", id);
                        return (None, false);
                    };
                    if free == 0 {
                        self.policy_error("dispatched with no free stream", id);
                        return (None, false);
                    }
                    let pref = match self.queue.view().get(i) {
                        Some(c) if c.priority >= self.urgent => StreamPreference::Urgent,
                        _ => StreamPreference::Normal,
                    };
                    let Some(stream) = self.pool.try_acquire(pref) else {
                        self.policy_error("dispatched with no free stream", id);
                        return (None, false);
                    };
                    self.dispatch(i, stream, overhead);
                }
            }
        }
    }

    fn policy_error(&self, what: &str, id: RequestId) {
        tracing::error!(target: TARGET, policy = self.policy.name(), request = id.0, "policy error: {what}; waiting for the next event");
    }

    /// Removes queue entry `i`, returning its candidate and payload.
    fn take_queued(&mut self, i: usize) -> Option<(Candidate, Payload<I, O>)> {
        let c = self.queue.remove_at(i)?;
        let p = self.payloads.remove(i)?;
        self.released += 1;
        Some((c, p))
    }

    fn log(&self, c: &Candidate, candidates: usize, slack: Option<Slack>, action: Action) {
        self.shared.log.push(Decision {
            seq: 0,
            at: Instant::now(),
            policy: self.policy.name(),
            request: c.id,
            model: ModelName::clone(&c.model),
            tenant: c.tenant,
            priority: c.priority,
            deadline: c.deadline,
            slack,
            estimate: c.estimate,
            candidates,
            queue_depth: self.queue.len(),
            action,
        });
    }

    fn reject(&mut self, i: usize, reason: RejectReason, now: Instant) {
        let seen = self.queue.len();
        let Some((c, p)) = self.take_queued(i) else {
            return;
        };
        let slack = match &reason {
            RejectReason::DeadlineUnmeetable { slack, .. } => Some(*slack),
            RejectReason::Custom { .. } => None,
        };
        tracing::info!(
            name: "sched.reject", target: TARGET,
            event = "reject",
            policy = self.policy.name(),
            request = c.id.0,
            model = %c.model,
            tenant = c.tenant.0,
            priority = c.priority.0,
            deadline_in_us = c.deadline.map(|d| Slack::between(d, now).0 / 1000),
            slack_us = slack.map(|s| s.0 / 1000),
            estimate_us = c.estimate.as_micros() as u64,
            candidates = seen,
            queue_depth = self.queue.len(),
            reason = %reason,
            "rejected before dispatch"
        );
        self.log(&c, seen, slack, Action::Rejected(reason.clone()));
        bump(&self.shared.counters.rejected);
        let policy = self.policy.name();
        self.deliver(
            p.completer,
            Err(RequestError::Rejected {
                id: c.id,
                policy,
                reason,
            }),
        );
    }

    fn cancel_queued(&mut self, reason: CancelReason) {
        let n = self.queue.len();
        for _ in 0..n {
            let Some((c, p)) = self.take_queued(0) else {
                break;
            };
            tracing::info!(name: "sched.cancel", target: TARGET, event = "cancel", request = c.id.0, model = %c.model, reason = ?reason, "cancelled while queued");
            self.log(&c, n, None, Action::Cancelled(reason));
            bump(&self.shared.counters.cancelled);
            self.deliver(
                p.completer,
                Err(RequestError::Cancelled { id: c.id, reason }),
            );
        }
    }

    fn dispatch(&mut self, i: usize, s: usize, overhead: Duration) {
        let seen = self.queue.len();
        let Some((c, p)) = self.take_queued(i) else {
            self.pool.release(s);
            return;
        };
        let now = Instant::now();
        let expected_end = add_saturating(now, c.estimate_bound + overhead);
        let slack = c.deadline.map(|d| Slack::between(d, expected_end));
        let span = tracing::debug_span!(target: TARGET, "sched.request", request = c.id.0, model = %c.model, stream = s);
        {
            let _enter =
                tracing::trace_span!(target: TARGET, "sched.dispatch", request = c.id.0).entered();
            tracing::debug!(
                name: "sched.dispatch", target: TARGET,
                event = "dispatch",
                policy = self.policy.name(),
                request = c.id.0,
                model = %c.model,
                tenant = c.tenant.0,
                priority = c.priority.0,
                deadline_in_us = c.deadline.map(|d| Slack::between(d, now).0 / 1000),
                slack_us = slack.map(|s| s.0 / 1000),
                estimate_us = c.estimate.as_micros() as u64,
                candidates = seen,
                queue_depth = self.queue.len(),
                stream = s,
                "dispatch"
            );
        }
        self.log(&c, seen, slack, Action::Dispatched { stream: s });
        self.policy.on_dispatch(&c, s, now);
        bump(&self.shared.counters.dispatched);
        let queued_for = now.saturating_duration_since(p.submitted_at);

        let (Some(stream), Some((start, end))) = (self.pool.stream(s), self.events.get(s)) else {
            // Unreachable: the pool handed out an index it has. Fail the request, not the loop.
            self.fail_now(
                c,
                p.completer,
                s,
                aegis_cuda::CudaError::invalid("Scheduler::dispatch", "stream index out of range"),
            );
            return;
        };
        if let Err(e) = stream.record(start) {
            let _ = stream.synchronize();
            self.pool.release(s);
            self.fail_now(c, p.completer, s, e);
            return;
        }
        let id = c.id;
        // The model's name is copied into an owned string only on the error paths: no
        // allocation per request on the hot path.
        let pending = match catch_unwind(AssertUnwindSafe(|| p.workload.enqueue(p.inputs, stream)))
        {
            Ok(Ok(collect)) => Ok(collect),
            Ok(Err(error)) => Err(RequestError::Workload {
                id,
                model: c.model.to_string(),
                stream: s,
                error,
            }),
            Err(panic) => Err(RequestError::WorkloadPanicked {
                id,
                model: c.model.to_string(),
                message: panic_message(panic.as_ref()),
            }),
        };
        let marker = CompletionMarker {
            inbox: Some(Arc::clone(&self.shared.inbox)),
            msg: CompletionMsg { stream: s, id },
        };
        let marked = stream.record(end).and_then(|()| {
            stream.enqueue_host("aegis-sched.complete", move || {
                drop(marker);
                Ok(())
            })
        });
        if let Err(e) = marked {
            // No completion will arrive: quiesce the stream here, then fail the request.
            let _ = stream.synchronize();
            self.pool.release(s);
            self.fail_now(c, p.completer, s, e);
            return;
        }
        self.in_flight.push(InFlight {
            id,
            stream: s,
            tenant: c.tenant,
            dispatched_at: now,
            expected_end,
        });
        self.shared
            .counters
            .in_flight
            .store(self.in_flight.len(), Ordering::Relaxed);
        if let Some(slot) = self.running.get_mut(s) {
            *slot = Some(Running {
                candidate: c,
                completer: p.completer,
                pending,
                dispatched_at: now,
                queued_for,
                span,
            });
        }
    }

    fn fail_now(
        &mut self,
        c: Candidate,
        completer: Completer<O>,
        s: usize,
        error: aegis_cuda::CudaError,
    ) {
        tracing::warn!(name: "sched.fail", target: TARGET, event = "fail", request = c.id.0, stream = s, error = %error, "dispatch failed");
        bump(&self.shared.counters.failed);
        self.deliver(
            completer,
            Err(RequestError::Device {
                id: c.id,
                stream: s,
                error,
            }),
        );
    }

    fn finish(&mut self, msg: CompletionMsg) {
        let s = msg.stream;
        let Some(run) = self.running.get_mut(s).and_then(Option::take) else {
            tracing::error!(target: TARGET, stream = s, request = msg.id.0, "completion for an idle stream ignored");
            return;
        };
        if run.candidate.id != msg.id {
            tracing::error!(target: TARGET, stream = s, request = msg.id.0, running = run.candidate.id.0, "completion for another request ignored");
            if let Some(slot) = self.running.get_mut(s) {
                *slot = Some(run);
            }
            return;
        }
        let _enter =
            tracing::trace_span!(target: TARGET, "sched.complete", request = msg.id.0).entered();
        let Running {
            candidate: c,
            completer,
            pending,
            dispatched_at,
            queued_for,
            span,
        } = run;
        let id = c.id;
        let (Some(stream), Some((start, end))) = (self.pool.stream(s), self.events.get(s)) else {
            return;
        };
        let synced = settle(stream);
        let device_time = match &synced {
            Ok(()) => end.elapsed_since(start).ok(),
            Err(_) => None,
        };
        let result: Result<O, RequestError> = match (synced, pending) {
            (Err(error), _) => Err(RequestError::Device {
                id,
                stream: s,
                error,
            }),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(collect)) => match catch_unwind(AssertUnwindSafe(collect)) {
                Ok(Ok(o)) => Ok(o),
                Ok(Err(error)) => Err(RequestError::Workload {
                    id,
                    model: c.model.to_string(),
                    stream: s,
                    error,
                }),
                Err(panic) => Err(RequestError::WorkloadPanicked {
                    id,
                    model: c.model.to_string(),
                    message: panic_message(panic.as_ref()),
                }),
            },
        };
        let finished_at = Instant::now();
        let service_time = finished_at.saturating_duration_since(dispatched_at);
        let succeeded = result.is_ok();
        {
            let mut est = lock(&self.shared.estimates);
            if let (true, Some(dt)) = (succeeded, device_time) {
                est.observe(&c.model, dt);
                est.observe_overhead(service_time.saturating_sub(dt));
                self.overhead = (est.overhead(), finished_at);
            }
        }
        self.policy.on_complete(&Feedback {
            id,
            model: ModelName::clone(&c.model),
            tenant: c.tenant,
            stream: s,
            estimate: c.estimate,
            device_time,
            service_time,
            succeeded,
        });
        self.in_flight.retain(|f| f.stream != s);
        self.shared
            .counters
            .in_flight
            .store(self.in_flight.len(), Ordering::Relaxed);
        if !self.pool.release(s) {
            tracing::error!(target: TARGET, stream = s, "released a stream that was not held");
        }
        let met = c.deadline.map(|d| finished_at <= d);
        tracing::debug!(
            name: "sched.complete", target: TARGET,
            event = "complete",
            request = id.0,
            model = %c.model,
            stream = s,
            ok = succeeded,
            device_us = device_time.map(|d| d.as_micros() as u64),
            service_us = service_time.as_micros() as u64,
            met_deadline = met,
            "completed"
        );
        if succeeded {
            bump(&self.shared.counters.completed);
        } else {
            bump(&self.shared.counters.failed);
        }
        let outcome = result.map(|outputs| Completed {
            id,
            outputs,
            stream: s,
            queued_for,
            device_time: device_time.unwrap_or(service_time),
            finished_at,
            deadline: c.deadline,
        });
        completer.complete(outcome);
        drop(span);
    }

    /// After a panic in the loop: no request may hang. Close the inbox and complete everything
    /// still known with `SchedulerFailed`.
    fn fail_all(&mut self) {
        self.inline = false;
        self.done = true;
        self.flush_deferred();
        let inbox = Arc::clone(&self.shared.inbox);
        inbox.close(StopMode::Cancel);
        let mut comps = Vec::new();
        inbox.take(0, &mut self.subs, &mut comps);
        self.admit_taken();
        self.cancel_queued(CancelReason::SchedulerFailed);
        for slot in &mut self.running {
            if let Some(run) = slot.take() {
                bump(&self.shared.counters.cancelled);
                run.completer.complete(Err(RequestError::Cancelled {
                    id: run.candidate.id,
                    reason: CancelReason::SchedulerFailed,
                }));
            }
        }
        self.in_flight.clear();
        self.shared.counters.in_flight.store(0, Ordering::Relaxed);
        inbox.release(std::mem::take(&mut self.released));
    }
}
