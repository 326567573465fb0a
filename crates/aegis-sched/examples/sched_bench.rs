//! Scheduler figures on the host backend (not a timed test; `cargo xtask bench sched`):
//!
//! 1. overhead: submit→dispatch latency (median, p99) and throughput with a trivial workload;
//! 2. overload at 10× capacity: every request accounted for (completed, rejected, cancelled,
//!    refused at submission), none lost;
//! 3. three models (1 / 2 / 4 ms) with different deadlines at 80% load: deadline-met % per
//!    policy (FIFO, priority, EDF), with EDF's explicit early rejections.
//!
//! `cargo run --release -p aegis-sched --example sched_bench [-- --quick] [-- --trace out.json]`
//! (`--trace` runs a short EDF scenario with a Chrome trace subscriber instead;
//! `--only=latency|throughput|overhead|overload|deadlines` runs one part).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_cuda::{Device, HostDeviceOptions, Stream};
use aegis_sched::{
    Collect, EarliestDeadlineFirst, Fifo, Outcome, Priority, Request, RequestError, SchedStats,
    Scheduler, SchedulerConfig, SchedulingPolicy, StopMode, StreamPool, StrictPriority,
    SubmitErrorKind, Workload, WorkloadError,
};

/// Enqueues nothing: measures the scheduler alone.
struct Trivial;

impl Workload<u64, u64> for Trivial {
    fn model_id(&self) -> &str {
        "trivial"
    }
    fn initial_estimate(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn enqueue(&self, input: u64, _stream: &Stream) -> Result<Collect<u64>, WorkloadError> {
        Ok(Box::new(move || Ok(input)))
    }
}

/// Sleeps a fixed time on the stream worker (stands in for a kernel of known duration).
struct Sleeper {
    name: &'static str,
    run: Duration,
}

impl Workload<u64, u64> for Sleeper {
    fn model_id(&self) -> &str {
        self.name
    }
    fn initial_estimate(&self) -> Duration {
        self.run
    }
    fn enqueue(&self, input: u64, stream: &Stream) -> Result<Collect<u64>, WorkloadError> {
        let run = self.run;
        stream.enqueue_host(self.name, move || {
            std::thread::sleep(run);
            Ok(())
        })?;
        Ok(Box::new(move || Ok(input)))
    }
}

fn sched(
    policy: impl SchedulingPolicy,
    streams: usize,
    capacity: usize,
    log: usize,
) -> Scheduler<u64, u64> {
    sched_with(policy, streams, capacity, log, false)
}

fn sched_with(
    policy: impl SchedulingPolicy,
    streams: usize,
    capacity: usize,
    log: usize,
    inline_dispatch: bool,
) -> Scheduler<u64, u64> {
    // `SCHED_LINGER_US` overrides the host stream workers' linger window (A/B runs).
    let mut options = HostDeviceOptions::default();
    if let Some(us) = std::env::var("SCHED_LINGER_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.stream_linger = Duration::from_micros(us);
    }
    let device = Device::host_with(options);
    let pool = StreamPool::new(&device, streams, &[]).expect("pool");
    Scheduler::new(
        policy,
        pool,
        SchedulerConfig {
            queue_capacity: capacity,
            decision_log_capacity: log,
            idle_spin: spin(),
            inline_dispatch,
            ..SchedulerConfig::default()
        },
    )
    .expect("scheduler")
}

/// `SCHED_SPIN_US` overrides the loop's idle polling window (default: the config default).
fn spin() -> Duration {
    std::env::var("SCHED_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SchedulerConfig::default().idle_spin, Duration::from_micros)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Waits until `busy` until `t` (sleep for the bulk, spin the last stretch for precision).
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(150));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Nanoseconds since a process-wide epoch: lets a `u64` input carry its submit time.
fn stamp() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A trivial graph of one host kernel: records how long after its submit stamp (the input)
/// it started running on the stream.
struct StampKernel {
    started: Arc<Mutex<Vec<Duration>>>,
}

impl Workload<u64, u64> for StampKernel {
    fn model_id(&self) -> &str {
        "stamp"
    }
    fn initial_estimate(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn enqueue(&self, input: u64, stream: &Stream) -> Result<Collect<u64>, WorkloadError> {
        let started = Arc::clone(&self.started);
        stream.enqueue_host("stamp", move || {
            let d = Duration::from_nanos(stamp().saturating_sub(input));
            started.lock().unwrap_or_else(|e| e.into_inner()).push(d);
            Ok(())
        })?;
        Ok(Box::new(move || Ok(input)))
    }
}

/// Voluntary + involuntary context switches of every thread of this process so far (Linux;
/// 0 elsewhere): a load-independent count of thread wake-ups.
fn context_switches() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|st| {
            st.lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

struct Lat {
    decision: [Duration; 3],
    started: [Duration; 3],
    switches_per_request: f64,
    refused: usize,
}

/// Submit→dispatch latency at a paced rate: one submitter, `gap` between submissions.
/// Two definitions, both from the moment `submit_with` is entered: to the dispatch decision
/// (the scheduler's `queued_for`), and to the moment the request's first kernel starts on its
/// stream.
fn latency(n: usize, gap: Duration, streams: usize, inline: bool) -> Lat {
    let s = sched_with(Fifo, streams, 4096, 0, inline);
    s.start().expect("start");
    let started = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let w: Arc<dyn Workload<u64, u64>> = Arc::new(StampKernel {
        started: Arc::clone(&started),
    });
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let cs0 = context_switches();
    let mut refused = 0usize;
    let t0 = Instant::now();
    for i in 0..n {
        // A client that sleeps between requests (spinning here would take one of the
        // machine's cores away from the scheduler and the stream workers).
        let target = t0 + gap * i as u32;
        if let Some(d) = target.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let lat = Arc::clone(&lat);
        let r = s.submit_with(Request::new(Arc::clone(&w), stamp()), move |o| {
            if let Ok(c) = o {
                lat.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(c.queued_for);
            }
        });
        // The scheduler fell 4096 requests behind the client: counted, not retried.
        if r.is_err() {
            refused += 1;
        }
    }
    s.stop(StopMode::Drain);
    let switches_per_request = (context_switches() - cs0) as f64 / n as f64;
    let mut v = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
    v.sort_unstable();
    let mut st = std::mem::take(&mut *started.lock().unwrap_or_else(|e| e.into_inner()));
    st.sort_unstable();
    Lat {
        decision: [pct(&v, 0.5), pct(&v, 0.99), pct(&v, 0.999)],
        started: [pct(&st, 0.5), pct(&st, 0.99), pct(&st, 0.999)],
        switches_per_request,
        refused,
    }
}

/// Requests/s end to end (submit → outcome delivered) with `submitters` threads blasting.
fn throughput(n: u64, streams: usize, submitters: u64, inline: bool) -> (f64, SchedStats, f64) {
    let s = Arc::new(sched_with(Fifo, streams, 8192, 0, inline));
    let cs0 = context_switches();
    s.start().expect("start");
    let w: Arc<dyn Workload<u64, u64>> = Arc::new(Trivial);
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..submitters)
        .map(|t| {
            let (s, w, done) = (Arc::clone(&s), Arc::clone(&w), Arc::clone(&done));
            std::thread::spawn(move || {
                for i in 0..n / submitters {
                    let mut req = Request::new(Arc::clone(&w), t * n + i);
                    loop {
                        let done = Arc::clone(&done);
                        match s.submit_with(req, move |_| {
                            done.fetch_add(1, Ordering::Relaxed);
                        }) {
                            Ok(_) => break,
                            Err(e) => {
                                // A client backs off on the Transient QueueFull (a yield
                                // loop would take the cores the loop and workers need).
                                req = e.into_request();
                                std::thread::sleep(Duration::from_micros(50));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("submitter");
    }
    let st = s.stop(StopMode::Drain);
    let secs = t0.elapsed().as_secs_f64();
    let cs = (context_switches() - cs0) as f64 / n as f64;
    (done.load(Ordering::Relaxed) as f64 / secs, st, cs)
}

/// Peer figure measured in the same run: a bare thread hop, no scheduler. The client sleeps
/// until its slot, stamps the time and hands it to a consumer thread parked on a Mutex +
/// Condvar (the same mechanism as the scheduler's inbox); the consumer records arrival minus
/// stamp. This is the floor for waking a parked thread on this machine right now.
fn peer_condvar(n: usize, gap: Duration) -> (Duration, Duration) {
    type Slot = (Mutex<(Vec<Instant>, bool, bool)>, std::sync::Condvar);
    let st: Arc<Slot> = Arc::new((
        Mutex::new((Vec::new(), false, false)),
        std::sync::Condvar::new(),
    ));
    let s2 = Arc::clone(&st);
    let h = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(n);
        let mut g = s2.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while g.0.is_empty() && !g.1 {
                g.2 = true;
                g = s2.1.wait(g).unwrap_or_else(|e| e.into_inner());
                g.2 = false;
            }
            let now = Instant::now();
            lat.extend(g.0.drain(..).map(|t| now - t));
            if g.1 {
                return lat;
            }
        }
    });
    let t0 = Instant::now();
    for i in 0..n {
        if let Some(d) = (t0 + gap * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let mut g = st.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0.push(Instant::now());
        let sleeping = g.2;
        drop(g);
        if sleeping {
            st.1.notify_one();
        }
    }
    st.0.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
    st.1.notify_one();
    let mut v = h.join().expect("peer thread");
    v.sort_unstable();
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// Peer figure: the same paced hop through a crossbeam channel (its receiver spins briefly,
/// then parks).
fn peer_crossbeam(n: usize, gap: Duration) -> (Duration, Duration) {
    let (tx, rx) = crossbeam::channel::unbounded::<Instant>();
    let h = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(n);
        while let Ok(t) = rx.recv() {
            lat.push(t.elapsed());
        }
        lat
    });
    let t0 = Instant::now();
    for i in 0..n {
        if let Some(d) = (t0 + gap * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        if tx.send(Instant::now()).is_err() {
            break;
        }
    }
    drop(tx);
    let mut v = h.join().expect("peer thread");
    v.sort_unstable();
    (pct(&v, 0.5), pct(&v, 0.99))
}

fn overhead(quick: bool, latency_part: bool, throughput_part: bool) {
    println!("== 1. Overhead (trivial workload, host backend, FIFO) ==");
    if latency_part {
        latencies(quick);
    }
    if throughput_part {
        throughputs(quick);
    }
}

fn latencies(quick: bool) {
    let n = if quick { 5_000 } else { 50_000 };
    for (label, gap) in [
        ("client paced at 20 us", Duration::from_micros(20)),
        ("client paced at 100 us", Duration::from_micros(100)),
        ("client paced at 1 ms", Duration::from_millis(1)),
    ] {
        let n = (n as u128 * 20_000 / gap.as_nanos().max(20_000)) as usize;
        let (c50, c99) = peer_condvar(n.min(2000), gap);
        let (x50, x99) = peer_crossbeam(n.min(2000), gap);
        println!(
            "  peer, same gap: parked-thread wake via Mutex+Condvar median {:6.2} us p99 {:7.2} us; crossbeam channel median {:6.2} us p99 {:7.2} us",
            us(c50), us(c99), us(x50), us(x99)
        );
        for inline in [false, true] {
            let l = latency(n, gap, 4, inline);
            let mode = if inline {
                "inline_dispatch"
            } else {
                "default (loop) "
            };
            let [d50, d99, d999] = l.decision;
            let [s50, s99, s999] = l.started;
            println!(
                "{label}, n={n}, {mode}: submit->dispatch decision median {:6.2} us p99 {:7.2} us p99.9 {:8.2} us | submit->kernel starts on stream median {:6.2} us p99 {:7.2} us p99.9 {:8.2} us | {:.2} context switches/request{}",
                us(d50), us(d99), us(d999), us(s50), us(s99), us(s999), l.switches_per_request,
                if l.refused > 0 { format!(" | {} QueueFull (fell behind)", l.refused) } else { String::new() }
            );
        }
    }
}

fn throughputs(quick: bool) {
    let n = if quick { 50_000 } else { 400_000 };
    for inline in [false, true] {
        for (streams, submitters) in [(1, 1), (4, 1), (4, 2), (8, 2)] {
            let (rps, st, cs) = throughput(n, streams, submitters, inline);
            println!(
                "throughput, {streams} streams, {submitters} submitter(s), n={n}, {}: {rps:10.0} requests/s (completed {}, QueueFull retries {}, {cs:.2} context switches/request)",
                if inline { "inline_dispatch" } else { "default" },
                st.completed, st.refused_full
            );
        }
    }
}

/// Offered load 10× the capacity of the pool, EDF with deadlines, then stop(Cancel) while
/// still overloaded: every submission must be accounted for.
fn overload(quick: bool) {
    println!(
        "\n== 2. Overload at 10x capacity (2 streams x 200 us => 10k req/s; offered 100k req/s) =="
    );
    let secs = if quick { 0.3 } else { 1.0 };
    for (name, policy) in [
        ("fifo", Box::new(Fifo) as Box<dyn SchedulingPolicy>),
        ("edf", Box::new(EarliestDeadlineFirst::new())),
    ] {
        let s = sched(policy, 2, 256, 0);
        s.start().expect("start");
        let w: Arc<dyn Workload<u64, u64>> = Arc::new(Sleeper {
            name: "w200us",
            run: Duration::from_micros(200),
        });
        let outcomes = Arc::new(Mutex::new([0u64; 4])); // ok, rejected, cancelled, failed
        let (mut attempts, mut refused_full, mut refused_other) = (0u64, 0u64, 0u64);
        let t0 = Instant::now();
        let gap = Duration::from_micros(10);
        let total = (secs / gap.as_secs_f64()) as u64;
        for i in 0..total {
            wait_until(t0 + gap * i as u32);
            attempts += 1;
            let o = Arc::clone(&outcomes);
            let req = Request::new(Arc::clone(&w), i).with_deadline_in(Duration::from_millis(5));
            let r = s.submit_with(req, move |out: Outcome<u64>| {
                let k = match out {
                    Ok(_) => 0,
                    Err(RequestError::Rejected { .. }) => 1,
                    Err(RequestError::Cancelled { .. }) => 2,
                    Err(_) => 3,
                };
                o.lock().unwrap_or_else(|e| e.into_inner())[k] += 1;
            });
            match r {
                Ok(_) => {}
                Err(e) if e.kind == SubmitErrorKind::QueueFull { capacity: 256 } => {
                    refused_full += 1
                }
                Err(_) => refused_other += 1,
            }
        }
        let st = s.stop(StopMode::Cancel);
        let [ok, rejected, cancelled, failed] = *outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let delivered = ok + rejected + cancelled + failed;
        let lost = attempts - refused_full - refused_other - delivered;
        println!(
            "{name:5}: offered {attempts}, refused QueueFull {refused_full} (request handed back), refused other {refused_other}, accepted {}: completed {ok}, rejected early {rejected}, cancelled at stop {cancelled}, failed {failed}; outcomes delivered {delivered}; LOST {lost}",
            st.accepted
        );
        let est: Vec<String> = s
            .estimates()
            .iter()
            .map(|e| {
                format!(
                    "{} mean {:.0} us dev {:.0} us",
                    e.model,
                    us(e.mean),
                    us(e.deviation)
                )
            })
            .collect();
        println!(
            "       estimates: {}; overhead {:.0} us",
            est.join("; "),
            us(s.overhead_estimate())
        );
        assert_eq!(lost, 0, "a request was lost");
        assert_eq!(st.accepted, delivered, "accepted != delivered");
    }
}

#[derive(Clone, Copy)]
struct Model {
    name: &'static str,
    run: Duration,
    deadline: Duration,
    priority: Priority,
}

const MODELS: [Model; 3] = [
    Model {
        name: "m1ms",
        run: Duration::from_millis(1),
        deadline: Duration::from_millis(4),
        priority: Priority(9),
    },
    Model {
        name: "m2ms",
        run: Duration::from_millis(2),
        deadline: Duration::from_millis(10),
        priority: Priority(5),
    },
    Model {
        name: "m4ms",
        run: Duration::from_millis(4),
        deadline: Duration::from_millis(25),
        priority: Priority(1),
    },
];

/// xorshift64*: a tiny deterministic PRNG so every policy sees the same arrival sequence.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    submitted: u64,
    met: u64,
    late: u64,
    rejected: u64,
    other: u64,
}

fn deadlines(quick: bool) {
    const STREAMS: usize = 2;
    let secs = if quick { 1.5 } else { 5.0 };
    let mean_run: f64 =
        MODELS.iter().map(|m| m.run.as_secs_f64()).sum::<f64>() / MODELS.len() as f64;
    let rate = 0.8 * STREAMS as f64 / mean_run;
    println!(
        "\n== 3. Deadlines at 80% load: models 1/2/4 ms (deadlines 4/10/25 ms), {STREAMS} streams, Poisson {rate:.0} req/s, {secs} s per policy =="
    );
    for (name, policy) in [
        ("fifo", Box::new(Fifo) as Box<dyn SchedulingPolicy>),
        ("priority", Box::new(StrictPriority::new())),
        ("edf", Box::new(EarliestDeadlineFirst::new())),
        (
            "edf+500us",
            Box::new(EarliestDeadlineFirst::with_margin(Duration::from_micros(
                500,
            ))),
        ),
    ] {
        let s = sched(policy, STREAMS, 4096, 0);
        s.start().expect("start");
        let ws: Vec<Arc<dyn Workload<u64, u64>>> = MODELS
            .iter()
            .map(|m| {
                Arc::new(Sleeper {
                    name: m.name,
                    run: m.run,
                }) as Arc<dyn Workload<u64, u64>>
            })
            .collect();
        let tallies = Arc::new(Mutex::new([Tally::default(); 3]));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let t0 = Instant::now();
        let mut t = 0.0f64;
        let mut i = 0u64;
        while t < secs {
            t += -(1.0 - rng.next_f64()).ln() / rate;
            let k = ((rng.next_f64() * 3.0) as usize).min(2);
            wait_until(t0 + Duration::from_secs_f64(t));
            let m = MODELS[k];
            let tl = Arc::clone(&tallies);
            let req = Request::new(Arc::clone(&ws[k]), i)
                .with_priority(m.priority)
                .with_deadline_in(m.deadline);
            tallies.lock().unwrap_or_else(|e| e.into_inner())[k].submitted += 1;
            let r = s.submit_with(req, move |o: Outcome<u64>| {
                let mut g = tl.lock().unwrap_or_else(|e| e.into_inner());
                match o {
                    Ok(c) if c.met_deadline() => g[k].met += 1,
                    Ok(_) => g[k].late += 1,
                    Err(RequestError::Rejected { .. }) => g[k].rejected += 1,
                    Err(_) => g[k].other += 1,
                }
            });
            if let Err(e) = r {
                tallies.lock().unwrap_or_else(|e| e.into_inner())[k].other += 1;
                eprintln!("submit refused: {e} ({:?})", e.kind.clone());
            }
            i += 1;
        }
        s.stop(StopMode::Drain);
        let tl = *tallies.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Tally::default();
        let mut per = String::new();
        for (k, m) in MODELS.iter().enumerate() {
            let x = tl[k];
            all.submitted += x.submitted;
            all.met += x.met;
            all.late += x.late;
            all.rejected += x.rejected;
            all.other += x.other;
            let admitted = x.met + x.late;
            per.push_str(&format!(
                "  {}: met {:5.1}% of admitted ({}/{}), rejected {}",
                m.name,
                100.0 * x.met as f64 / admitted.max(1) as f64,
                x.met,
                admitted,
                x.rejected
            ));
        }
        let admitted = all.met + all.late;
        println!(
            "{name:9}: submitted {}, admitted {admitted}, met {:6.2}% of admitted, {:6.2}% of submitted, late {}, rejected early {}, other {}",
            all.submitted,
            100.0 * all.met as f64 / admitted.max(1) as f64,
            100.0 * all.met as f64 / all.submitted.max(1) as f64,
            all.late,
            all.rejected,
            all.other
        );
        println!("         {per}");
        let est: Vec<String> = s
            .estimates()
            .iter()
            .map(|e| {
                format!(
                    "{} mean {:.0} us dev {:.0} us",
                    e.model,
                    us(e.mean),
                    us(e.deviation)
                )
            })
            .collect();
        println!("          estimates: {}", est.join("; "));
    }
}

fn trace(path: &str) {
    use tracing_subscriber::prelude::*;
    let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
        .file(path)
        .trace_style(tracing_chrome::TraceStyle::Async)
        .include_args(true)
        .build();
    tracing_subscriber::registry().with(layer).init();
    let s = sched(EarliestDeadlineFirst::new(), 2, 64, 64);
    s.start().expect("start");
    let w: Arc<dyn Workload<u64, u64>> = Arc::new(Sleeper {
        name: "m1ms",
        run: Duration::from_millis(1),
    });
    let hs: Vec<_> = (0..40)
        .filter_map(|i| {
            let d = if i % 7 == 0 { 1 } else { 30 };
            s.submit(Request::new(Arc::clone(&w), i).with_deadline_in(Duration::from_millis(d)))
                .ok()
        })
        .collect();
    let outcomes: Vec<_> = hs.into_iter().map(|h| h.wait()).collect();
    s.stop(StopMode::Drain);
    let rejected = outcomes.iter().filter(|o| o.is_err()).count();
    drop(guard);
    println!(
        "wrote Chrome trace {path}: {} requests, {rejected} rejected early; open in chrome://tracing or Perfetto",
        outcomes.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--trace") {
        let path = args.get(i + 1).map_or("sched_trace.json", String::as_str);
        trace(path);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = |name: &str| {
        !args.iter().any(|a| a.starts_with("--only"))
            || args.iter().any(|a| a == &format!("--only={name}"))
    };
    println!(
        "aegis-sched bench (host backend, {} cores){}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if quick { ", quick" } else { "" }
    );
    if only("overhead") || only("latency") || only("throughput") {
        overhead(
            quick,
            only("overhead") || only("latency"),
            only("overhead") || only("throughput"),
        );
    }
    if only("overload") {
        overload(quick);
    }
    if only("deadlines") {
        deadlines(quick);
    }
}
