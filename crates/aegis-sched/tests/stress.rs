//! Many submitting threads against a small queue: every accepted request gets exactly one
//! outcome, refusals hand the request back, nothing is lost, including across a concurrent stop.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegis_sched::{
    EarliestDeadlineFirst, Fifo, Request, SchedulingPolicy, StopMode, SubmitErrorKind,
};
use common::{scheduler, Doubler};
use rstest::rstest;

const THREADS: u64 = 8;
const PER_THREAD: u64 = 400;

#[rstest]
#[case::fifo(Box::new(Fifo) as Box<dyn SchedulingPolicy>)]
#[case::edf(Box::new(EarliestDeadlineFirst::new()))]
fn many_submitters_retrying_on_queue_full(#[case] policy: Box<dyn SchedulingPolicy>) {
    let s = Arc::new(scheduler(policy, 4, 32));
    s.start().unwrap();
    let w = Doubler::new("m", Duration::ZERO);
    let seen: Arc<Vec<AtomicU32>> = Arc::new(
        (0..THREADS * PER_THREAD)
            .map(|_| AtomicU32::new(0))
            .collect(),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, w, seen) = (s.clone(), w.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut full = 0u64;
                for i in 0..PER_THREAD {
                    let key = t * PER_THREAD + i;
                    let mut req = Request::new(w.clone(), key);
                    loop {
                        let seen = seen.clone();
                        match s.submit_with(req, move |o| {
                            let c = o.expect("no failures expected");
                            assert_eq!(c.outputs, key * 2);
                            seen[key as usize].fetch_add(1, Ordering::SeqCst);
                        }) {
                            Ok(_) => break,
                            Err(e) => {
                                assert_eq!(e.kind, SubmitErrorKind::QueueFull { capacity: 32 });
                                full += 1;
                                req = e.into_request();
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                full
            })
        })
        .collect();
    let refused: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let st = s.stop(StopMode::Drain);
    assert_eq!(st.accepted, THREADS * PER_THREAD);
    assert_eq!(st.completed, THREADS * PER_THREAD);
    assert_eq!(st.refused_full, refused);
    assert!(seen.iter().all(|c| c.load(Ordering::SeqCst) == 1));
}

/// Submitters race a `stop(Cancel)`: each request is either refused (and handed back) or
/// accepted and then completed or cancelled, exactly once.
#[test]
fn stop_racing_submitters_loses_nothing() {
    let s = Arc::new(scheduler(Fifo, 2, 64));
    s.start().unwrap();
    let w = Doubler::new("m", Duration::from_micros(20));
    let outcomes = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, w, outcomes) = (s.clone(), w.clone(), outcomes.clone());
            std::thread::spawn(move || {
                let (mut accepted, mut refused) = (0u64, 0u64);
                for i in 0..PER_THREAD {
                    let o = outcomes.clone();
                    match s.submit_with(Request::new(w.clone(), t * PER_THREAD + i), move |_| {
                        o.fetch_add(1, Ordering::SeqCst);
                    }) {
                        Ok(_) => accepted += 1,
                        Err(e) => {
                            assert_eq!(e.into_request().inputs, t * PER_THREAD + i);
                            refused += 1;
                        }
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(5));
    let st = s.stop(StopMode::Cancel);
    let (accepted, refused) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(accepted + refused, THREADS * PER_THREAD);
    assert_eq!(st.accepted, accepted);
    assert_eq!(u64::from(outcomes.load(Ordering::SeqCst)), accepted);
    assert_eq!(
        st.completed + st.cancelled + st.failed + st.rejected,
        accepted
    );
}
