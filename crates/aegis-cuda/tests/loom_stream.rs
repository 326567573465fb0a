//! loom model of the host stream/event handoff: a stream that waits on an event recorded
//! after some work on another stream must observe that work, under every interleaving loom
//! explores (preemption bound 2). Run: `cargo xtask loom`.
#![cfg(loom)]

use aegis_cuda::sync::{Arc, AtomicBool, Ordering};
use aegis_cuda::{Device, Event, HostDeviceOptions, Stream, StreamPriority};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

#[test]
fn event_wait_orders_work_across_streams() {
    model(|| {
        let d = Device::host_with(HostDeviceOptions {
            capacity: 1024,
            threads: 1,
            ..HostDeviceOptions::default()
        });
        let a = Stream::new(&d, StreamPriority::NORMAL).unwrap();
        let b = Stream::new(&d, StreamPriority::NORMAL).unwrap();
        let e = Event::new(&d).unwrap();
        let written = Arc::new(AtomicBool::new(false));
        let w = Arc::clone(&written);
        a.enqueue_host("produce", move || {
            w.store(true, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        a.record(&e).unwrap();
        b.wait_event(&e).unwrap();
        let r = Arc::clone(&written);
        b.enqueue_host("consume", move || {
            // Relaxed on purpose: the event handoff itself must provide the ordering.
            assert!(r.load(Ordering::Relaxed), "consumer ran before producer");
            Ok(())
        })
        .unwrap();
        b.synchronize().unwrap();
        a.synchronize().unwrap();
    });
}

#[test]
fn synchronize_observes_all_prior_work_and_drop_drains() {
    model(|| {
        let d = Device::host_with(HostDeviceOptions {
            capacity: 1024,
            threads: 1,
            ..HostDeviceOptions::default()
        });
        let done = Arc::new(AtomicBool::new(false));
        {
            let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
            let w = Arc::clone(&done);
            s.enqueue_host("work", move || {
                w.store(true, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
        } // drop drains
        assert!(done.load(Ordering::Relaxed));
    });
}
