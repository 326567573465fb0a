//! `inline_dispatch`: submitters that find the loop idle dispatch themselves. The guarantees
//! must not change: exactly one outcome per accepted request, outcomes (callbacks) delivered on
//! the scheduling thread, rejections early and typed, stop never hangs.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_cuda::Device;
use aegis_sched::{
    EarliestDeadlineFirst, Fifo, RejectReason, Request, RequestError, Scheduler, SchedulerConfig,
    SchedulingPolicy, StopMode, StreamPool,
};
use common::{Doubler, Mode};

const WAIT: Duration = Duration::from_secs(10);
const THREAD: &str = "aegis-sched-inline-test";

fn inline_scheduler(
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
            inline_dispatch: true,
            thread_name: THREAD.into(),
            ..SchedulerConfig::default()
        },
    )
    .unwrap()
}

fn on_sched_thread() -> bool {
    std::thread::current().name() == Some(THREAD)
}

#[test]
fn concurrent_inline_submitters_get_exactly_one_outcome_on_the_scheduling_thread() {
    let s = Arc::new(inline_scheduler(Fifo, 2, 4096));
    s.start().unwrap();
    let w = Doubler::new("m", Duration::ZERO);
    let sum = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let elsewhere = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (s, w, sum, count, elsewhere) = (
                s.clone(),
                w.clone(),
                sum.clone(),
                count.clone(),
                elsewhere.clone(),
            );
            std::thread::spawn(move || {
                for i in 0..300u64 {
                    let (sum, count, elsewhere) = (sum.clone(), count.clone(), elsewhere.clone());
                    let v = t * 1000 + i;
                    s.submit_with(Request::new(w.clone(), v), move |o| {
                        if !on_sched_thread() {
                            elsewhere.fetch_add(1, Ordering::SeqCst);
                        }
                        sum.fetch_add(o.unwrap().outputs, Ordering::SeqCst);
                        count.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
                    if i % 16 == 0 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stop(StopMode::Drain);
    let expect: u64 = (0..2u64)
        .flat_map(|t| (0..300u64).map(move |i| 2 * (t * 1000 + i)))
        .sum();
    assert_eq!(count.load(Ordering::SeqCst), 600);
    assert_eq!(sum.load(Ordering::SeqCst), expect);
    assert_eq!(
        elsewhere.load(Ordering::SeqCst),
        0,
        "callbacks run on the loop"
    );
    assert_eq!((st.accepted, st.completed, st.outstanding()), (600, 600, 0));
    assert_eq!(w.runs(), 600);
}

#[test]
fn inline_rejections_and_failures_are_delivered_by_the_scheduling_thread() {
    let s = inline_scheduler(EarliestDeadlineFirst::new(), 1, 16);
    s.start().unwrap();
    let slow = Doubler::with(
        "slow",
        Duration::ZERO,
        Duration::from_millis(50),
        Mode::Double,
        None,
    );
    let (tx, rx) = std::sync::mpsc::channel();
    s.submit_with(
        Request::new(slow.clone(), 1).with_deadline_in(Duration::from_millis(5)),
        move |o| {
            let _ = tx.send((on_sched_thread(), o.map(|c| c.outputs)));
        },
    )
    .unwrap();
    let (on_loop, o) = rx.recv_timeout(WAIT).expect("an outcome");
    assert!(
        on_loop,
        "the rejection is delivered on the scheduling thread"
    );
    assert!(matches!(
        o,
        Err(RequestError::Rejected {
            reason: RejectReason::DeadlineUnmeetable { .. },
            ..
        })
    ));
    assert_eq!(slow.runs(), 0);
    // A failing enqueue on the submitter's thread is reported through the loop as well.
    let bad = Doubler::with(
        "bad",
        Duration::ZERO,
        Duration::ZERO,
        Mode::FailEnqueue,
        None,
    );
    let got = Arc::new(Mutex::new(None));
    let g2 = got.clone();
    let h = s.submit(Request::new(bad, 3)).unwrap();
    let e = h.wait_timeout(WAIT).expect("no hang").unwrap_err();
    assert!(matches!(e, RequestError::Workload { .. }), "{e}");
    s.submit_with(
        Request::new(Doubler::new("ok", Duration::ZERO), 4),
        move |o| {
            *g2.lock().unwrap() = Some((on_sched_thread(), o.unwrap().outputs));
        },
    )
    .unwrap();
    let st = s.stop(StopMode::Drain);
    assert_eq!(*got.lock().unwrap(), Some((true, 8)));
    assert_eq!(st.outstanding(), 0);
}

#[test]
fn stop_racing_inline_submitters_leaves_no_request_without_an_outcome() {
    for mode in [StopMode::Drain, StopMode::Cancel] {
        let s = Arc::new(inline_scheduler(Fifo, 1, 64));
        s.start().unwrap();
        let w = Doubler::new("m", Duration::from_micros(200));
        let outcomes = Arc::new(AtomicU64::new(0));
        let submitter = {
            let (s, w, outcomes) = (s.clone(), w.clone(), outcomes.clone());
            std::thread::spawn(move || {
                let mut accepted = 0u64;
                for i in 0..200 {
                    let o = outcomes.clone();
                    if s.submit_with(Request::new(w.clone(), i), move |_| {
                        o.fetch_add(1, Ordering::SeqCst);
                    })
                    .is_ok()
                    {
                        accepted += 1;
                    }
                }
                accepted
            })
        };
        std::thread::sleep(Duration::from_millis(2));
        let st = s.stop(mode);
        let accepted = submitter.join().unwrap();
        assert_eq!(st.accepted, accepted);
        assert_eq!(outcomes.load(Ordering::SeqCst), accepted, "{mode:?}");
        assert_eq!(st.outstanding(), 0);
    }
}
