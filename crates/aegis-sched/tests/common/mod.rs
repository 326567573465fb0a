//! Test workloads for the host backend.
#![allow(dead_code)] // each test binary uses a subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use aegis_cuda::{Device, ErrorCategory, Stream};
use aegis_sched::{
    Collect, Scheduler, SchedulerConfig, SchedulingPolicy, StreamPool, Workload, WorkloadError,
};

/// What the test workloads do on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Doubles the input after sleeping `run` on the stream worker.
    Double,
    /// `enqueue` fails.
    FailEnqueue,
    /// `enqueue` panics.
    PanicEnqueue,
    /// The collect closure fails.
    FailCollect,
}

/// Doubles its input on the stream worker, after an optional sleep and an optional gate.
/// The output is produced by the stream work, so collecting before the stream is done
/// yields "no output": the scheduler's completion guarantee is tested for real.
pub struct Doubler {
    pub name: String,
    pub run: Duration,
    pub estimate: Duration,
    pub mode: Mode,
    pub gate: Option<Gate>,
    pub ran: AtomicU64,
}

impl Doubler {
    pub fn new(name: &str, run: Duration) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            run,
            estimate: run,
            mode: Mode::Double,
            gate: None,
            ran: AtomicU64::new(0),
        })
    }

    pub fn with(
        name: &str,
        run: Duration,
        estimate: Duration,
        mode: Mode,
        gate: Option<Gate>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            run,
            estimate,
            mode,
            gate,
            ran: AtomicU64::new(0),
        })
    }

    pub fn runs(&self) -> u64 {
        self.ran.load(Ordering::SeqCst)
    }
}

impl Workload<u64, u64> for Doubler {
    fn model_id(&self) -> &str {
        &self.name
    }

    fn initial_estimate(&self) -> Duration {
        self.estimate
    }

    fn enqueue(&self, input: u64, stream: &Stream) -> Result<Collect<u64>, WorkloadError> {
        match self.mode {
            Mode::FailEnqueue => {
                return Err(WorkloadError::new(ErrorCategory::Permanent, "bad inputs"))
            }
            Mode::PanicEnqueue => panic!("workload bug"),
            _ => {}
        }
        self.ran.fetch_add(1, Ordering::SeqCst);
        let out = Arc::new(Mutex::new(None));
        let o2 = Arc::clone(&out);
        let run = self.run;
        let gate = self.gate.clone();
        stream.enqueue_host("doubler", move || {
            if let Some(g) = gate {
                g.pass();
            }
            if !run.is_zero() {
                std::thread::sleep(run);
            }
            *o2.lock().unwrap() = Some(input * 2);
            Ok(())
        })?;
        let mode = self.mode;
        Ok(Box::new(move || {
            if mode == Mode::FailCollect {
                return Err(WorkloadError::new(
                    ErrorCategory::Transient,
                    "collect failed",
                ));
            }
            out.lock().unwrap().take().ok_or_else(|| {
                WorkloadError::new(ErrorCategory::Fatal, "collected before the stream finished")
            })
        }))
    }
}

/// A gate stream work waits on until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    pub fn pass(&self) {
        let mut g = self.0 .0.lock().unwrap();
        while !*g {
            g = self.0 .1.wait(g).unwrap();
        }
    }
}

pub fn scheduler(
    policy: impl SchedulingPolicy,
    streams: usize,
    capacity: usize,
) -> Scheduler<u64, u64> {
    let device = Device::host();
    let pool = StreamPool::new(&device, streams, &[]).unwrap();
    Scheduler::new(
        policy,
        pool,
        SchedulerConfig {
            queue_capacity: capacity,
            ..SchedulerConfig::default()
        },
    )
    .unwrap()
}
