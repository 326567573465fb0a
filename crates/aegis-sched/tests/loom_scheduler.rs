//! loom model of the whole scheduler on the host backend: a request submitted from another
//! thread while the scheduler is being stopped gets exactly one outcome (outputs if it made it
//! in and ran, `Cancelled` if it was queued at the stop, or a `Stopped` refusal with the request
//! handed back), and stop never hangs. Run: `cargo xtask loom`.
#![cfg(loom)]

use std::time::Duration;

use aegis_cuda::sync::{thread, Arc, AtomicUsize, Ordering};
use aegis_cuda::{Device, HostDeviceOptions, Stream};
use aegis_sched::{
    Collect, Fifo, Request, RequestError, Scheduler, SchedulerConfig, StopMode, StreamPool,
    SubmitErrorKind, Workload, WorkloadError,
};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

/// Enqueues nothing; returns its input.
struct Echo;

impl Workload<u32, u32> for Echo {
    fn model_id(&self) -> &str {
        "echo"
    }
    fn initial_estimate(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn enqueue(&self, input: u32, _stream: &Stream) -> Result<Collect<u32>, WorkloadError> {
        Ok(Box::new(move || Ok(input)))
    }
}

#[test]
fn submit_racing_stop_completes_exactly_once() {
    submit_racing_stop(false);
}

/// The same race with `inline_dispatch`: the submitter may run the dispatch step itself under
/// the loop-state lock (try-lock, never waiting), racing the loop thread and the stop.
#[test]
fn inline_submit_racing_stop_completes_exactly_once() {
    submit_racing_stop(true);
}

fn submit_racing_stop(inline_dispatch: bool) {
    model(move || {
        let device = Device::host_with(HostDeviceOptions {
            capacity: 1024,
            threads: 1,
            ..HostDeviceOptions::default()
        });
        let pool = StreamPool::new(&device, 1, &[]).unwrap();
        let cfg = SchedulerConfig {
            queue_capacity: 2,
            decision_log_capacity: 0,
            idle_spin: Duration::ZERO,
            inline_dispatch,
            ..SchedulerConfig::default()
        };
        let s: Arc<Scheduler<u32, u32>> = Arc::new(Scheduler::new(Fifo, pool, cfg).unwrap());
        s.start().unwrap();
        let outcomes = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (s, outcomes) = (s.clone(), outcomes.clone());
            thread::spawn(move || {
                let o = outcomes.clone();
                match s.submit_with(Request::new(std::sync::Arc::new(Echo), 7), move |r| {
                    match r {
                        Ok(c) => assert_eq!(c.outputs, 7),
                        Err(e) => assert!(matches!(e, RequestError::Cancelled { .. }), "{e}"),
                    }
                    o.fetch_add(1, Ordering::SeqCst);
                }) {
                    Ok(_) => true,
                    Err(e) => {
                        assert_eq!(e.kind, SubmitErrorKind::Stopped);
                        assert_eq!(e.into_request().inputs, 7);
                        false
                    }
                }
            })
        };
        let st = s.stop(StopMode::Cancel);
        let accepted = submitter.join().unwrap();
        assert_eq!(outcomes.load(Ordering::SeqCst), usize::from(accepted));
        assert_eq!(st.accepted, u64::from(accepted));
        assert_eq!(st.outstanding(), 0);
        assert_eq!((st.queued, st.in_flight), (0, 0));
    });
}
