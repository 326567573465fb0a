//! Host backend semantics: in-order streams, cross-stream event waits, memory capacity,
//! fault injection, panics and drop-with-pending-work. These are CUDA's semantics; the same
//! suite shape runs against the CUDA backend in `cuda_*` tests.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_cuda::{
    Categorized, CudaError, Device, DeviceMemory, ErrorCategory, Event, FaultRule, FaultTrigger,
    HostBuffer, HostDeviceOptions, InjectedFaultKind, Stream, StreamPriority,
};
use rstest::rstest;

fn stream(d: &Device) -> Stream {
    Stream::new(d, StreamPriority::NORMAL).unwrap()
}

/// A tiny deterministic PRNG so the random schedules are reproducible.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn enqueue_returns_before_work_runs_and_runs_in_order() {
    let d = Device::host();
    let s = stream(&d);
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&gate);
    s.enqueue_host("gate", move || {
        let (m, cv) = &*g;
        let mut open = m.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        Ok(())
    })
    .unwrap();
    for i in 0..100 {
        let log = Arc::clone(&log);
        s.enqueue_host("push", move || {
            log.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
    }
    // Every enqueue returned while the first item was still blocked: asynchronous.
    assert_eq!(s.pending(), 101);
    assert!(log.lock().unwrap().is_empty());
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    s.synchronize().unwrap();
    assert_eq!(*log.lock().unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(s.pending(), 0);
}

/// Thousands of items across several streams, with random cross-stream event dependencies:
/// every item must start only after everything it depends on has finished.
#[rstest]
#[case(2, 1)]
#[case(3, 2)]
#[case(4, 3)]
#[case(8, 4)]
fn cross_stream_dependencies_always_respected(#[case] streams: usize, #[case] seed: u64) {
    let d = Device::host();
    let ss: Vec<Stream> = (0..streams).map(|_| stream(&d)).collect();
    const ITEMS: usize = 2500;
    let finished: Arc<Vec<std::sync::atomic::AtomicBool>> = Arc::new(
        (0..ITEMS)
            .map(|_| std::sync::atomic::AtomicBool::new(false))
            .collect(),
    );
    let violations = Arc::new(AtomicUsize::new(0));
    // last[s] = (item index, event recorded after it) for each stream.
    let mut last: Vec<Option<(usize, Event)>> = vec![None; streams];
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for item in 0..ITEMS {
        let s = (xorshift(&mut rng) as usize) % streams;
        // Depend on the latest item of up to two other streams.
        let mut deps = Vec::new();
        for _ in 0..2 {
            let o = (xorshift(&mut rng) as usize) % streams;
            if o != s {
                if let Some((dep_item, ev)) = &last[o] {
                    ss[s].wait_event(ev).unwrap();
                    deps.push(*dep_item);
                }
            }
        }
        if let Some((prev, _)) = &last[s] {
            deps.push(*prev); // in-order on its own stream
        }
        let f = Arc::clone(&finished);
        let v = Arc::clone(&violations);
        let spin = (xorshift(&mut rng) % 3) as u32;
        ss[s]
            .enqueue_host("item", move || {
                if deps.iter().any(|d| !f[*d].load(Ordering::SeqCst)) {
                    v.fetch_add(1, Ordering::SeqCst);
                }
                for _ in 0..spin {
                    std::hint::spin_loop();
                }
                f[item].store(true, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        let ev = Event::new(&d).unwrap();
        ss[s].record(&ev).unwrap();
        last[s] = Some((item, ev));
    }
    for s in &ss {
        s.synchronize().unwrap();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(finished.iter().all(|f| f.load(Ordering::SeqCst)));
}

#[test]
fn wait_on_unrecorded_event_does_not_block() {
    let d = Device::host();
    let s = stream(&d);
    let e = Event::new(&d).unwrap();
    assert!(e.query());
    s.wait_event(&e).unwrap();
    s.synchronize().unwrap();
    e.synchronize().unwrap();
}

#[test]
fn event_wait_captures_latest_record_at_call_time() {
    let d = Device::host();
    let (a, b) = (stream(&d), stream(&d));
    let e = Event::new(&d).unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = Arc::clone(&gate);
    a.enqueue_host("blocked", move || {
        g.wait();
        Ok(())
    })
    .unwrap();
    a.record(&e).unwrap();
    assert!(!e.query(), "record point not yet passed");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    b.wait_event(&e).unwrap();
    b.enqueue_host("after", move || {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "b ran past its wait");
    gate.wait();
    b.synchronize().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(e.query());
}

#[test]
fn elapsed_time_between_events() {
    let d = Device::host();
    let s = stream(&d);
    let (e0, e1) = (Event::new(&d).unwrap(), Event::new(&d).unwrap());
    s.record(&e0).unwrap();
    s.enqueue_host("sleep", || {
        std::thread::sleep(Duration::from_millis(10));
        Ok(())
    })
    .unwrap();
    s.record(&e1).unwrap();
    e1.synchronize().unwrap();
    let dt = e1.elapsed_since(&e0).unwrap();
    assert!(dt >= Duration::from_millis(10), "{dt:?}");
    // Not ready: a never-completed event reports NotReady, a Transient error.
    let e2 = Event::new(&d).unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = Arc::clone(&gate);
    s.enqueue_host("block", move || {
        g.wait();
        Ok(())
    })
    .unwrap();
    s.record(&e2).unwrap();
    let err = e2.elapsed_since(&e0).unwrap_err();
    assert!(matches!(err, CudaError::NotReady { .. }));
    assert_eq!(err.category(), ErrorCategory::Transient);
    gate.wait();
    s.synchronize().unwrap();
}

#[test]
fn memory_round_trip_copy_and_memset() {
    let d = Device::host();
    let s = stream(&d);
    let a = DeviceMemory::alloc(&d, 4096).unwrap();
    let b = DeviceMemory::alloc(&d, 4096).unwrap();
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    s.upload(data.clone(), &a.as_slice()).unwrap();
    s.copy(&a.as_slice(), &b.as_slice()).unwrap();
    s.memset(&a.slice(0..100).unwrap(), 0xAB).unwrap();
    let stage = HostBuffer::alloc(&d, 4096).unwrap();
    s.copy(&b.as_slice(), &stage.as_slice()).unwrap();
    s.synchronize().unwrap();
    assert_eq!(&stage.read().unwrap()[..], &data[..]);
    s.copy(&a.as_slice(), &stage.as_slice()).unwrap();
    s.synchronize().unwrap();
    let r = stage.read().unwrap();
    assert!(r[..100].iter().all(|&x| x == 0xAB));
    assert_eq!(&r[100..], &data[100..]);
    assert_ne!(a.as_slice().allocation_id(), b.as_slice().allocation_id());
}

#[test]
fn allocations_are_aligned_and_views_are_f32_castable() {
    let d = Device::host();
    for len in [1usize, 3, 64, 1000, 1 << 20] {
        let m = DeviceMemory::alloc(&d, len).unwrap();
        let view = m.as_slice();
        let r = view.host_read("t").unwrap();
        assert_eq!(r.as_ptr() as usize % aegis_cuda::ALLOCATION_ALIGN, 0);
        assert!(r.iter().all(|&b| b == 0), "zeroed");
    }
    let m = DeviceMemory::alloc(&d, 64).unwrap();
    let w = m.as_slice();
    let mut g = w.host_write("t").unwrap();
    let f: &mut [f32] = bytemuck::cast_slice_mut(&mut g[..]);
    f[3] = 1.5;
    drop(g);
    assert_eq!(&w.host_read("t").unwrap()[12..16], &1.5f32.to_ne_bytes());
}

#[test]
fn capacity_exhaustion_fails_fast_with_numbers_and_recovers_on_free() {
    let d = Device::host_with(HostDeviceOptions {
        capacity: 10_000,
        threads: 1,
        ..HostDeviceOptions::default()
    });
    let a = DeviceMemory::alloc(&d, 6000).unwrap();
    let err = DeviceMemory::alloc(&d, 5000).unwrap_err();
    match &err {
        CudaError::OutOfMemory {
            requested,
            free,
            capacity,
            call,
            ..
        } => {
            assert_eq!((*requested, *free, *capacity), (5000, 4000, 10_000));
            assert_eq!(*call, "DeviceMemory::alloc");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert!(
        err.to_string()
            .contains("requested 5000 bytes, 4000 free of 10000"),
        "{err}"
    );
    assert_eq!(d.memory_used(), 6000);
    drop(a);
    assert_eq!(d.memory_used(), 0);
    let _b = DeviceMemory::alloc(&d, 10_000).unwrap();
    assert_eq!(d.memory_free(), 0);
}

#[test]
fn concurrent_allocations_never_exceed_capacity() {
    let d = Device::host_with(HostDeviceOptions {
        capacity: 64 * 1024,
        threads: 1,
        ..HostDeviceOptions::default()
    });
    let over = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|sc| {
        for t in 0..8 {
            let d = d.clone();
            let over = Arc::clone(&over);
            sc.spawn(move || {
                let mut held = Vec::new();
                for i in 0..500 {
                    match DeviceMemory::alloc(&d, 1024 * (1 + (t + i) % 7)) {
                        Ok(m) => held.push(m),
                        Err(CudaError::OutOfMemory { .. }) => {
                            held.clear();
                        }
                        Err(e) => panic!("{e}"),
                    }
                    if d.memory_used() > 64 * 1024 {
                        over.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(over.load(Ordering::SeqCst), 0);
    assert_eq!(d.memory_used(), 0);
}

#[test]
fn missing_wait_is_detected_as_a_race() {
    let d = Device::host();
    let (a, b) = (stream(&d), stream(&d));
    let m = DeviceMemory::alloc(&d, 1024).unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let (s1, g1) = (m.as_slice(), Arc::clone(&gate));
    // Stream a holds a write view while b (with no event wait) tries to read the same bytes.
    a.enqueue_host("writer", move || {
        let _w = s1.host_write("writer")?;
        g1.wait(); // b runs while the write view is held
        g1.wait();
        Ok(())
    })
    .unwrap();
    let (s2, g2) = (m.slice(0..16).unwrap(), Arc::clone(&gate));
    b.enqueue_host("reader", move || {
        g2.wait();
        let r = s2.host_read("reader").map(|_| ());
        g2.wait();
        r
    })
    .unwrap();
    a.synchronize().unwrap();
    let err = b.synchronize().unwrap_err();
    assert!(
        matches!(err, CudaError::RaceDetected { ref label, .. } if label == "reader"),
        "{err}"
    );
    // Disjoint ranges of one allocation may be used concurrently.
    let x = m.slice(0..512).unwrap();
    let y = m.slice(512..1024).unwrap();
    let _wx = x.host_write("x").unwrap();
    let _wy = y.host_write("y").unwrap();
}

#[test]
fn recoverable_injected_fault_is_reported_once_and_stream_continues() {
    let d = Device::host();
    let s = stream(&d);
    d.inject_fault(FaultRule {
        trigger: FaultTrigger::Label {
            label: "k".into(),
            n: 2,
        },
        kind: InjectedFaultKind::Recoverable,
    })
    .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let r = Arc::clone(&ran);
        s.enqueue_host("k", move || {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    }
    let err = s.synchronize().unwrap_err();
    assert!(matches!(
        err,
        CudaError::InjectedFault {
            kind: InjectedFaultKind::Recoverable,
            ..
        }
    ));
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_eq!(ran.load(Ordering::SeqCst), 4, "only the third item failed");
    s.synchronize().unwrap();
    assert!(d.poisoned().is_none());
}

#[test]
fn sticky_fault_poisons_device_until_rebuilt_and_never_hangs_waiters() {
    let d = Device::host();
    let (a, b) = (stream(&d), stream(&d));
    d.inject_fault(FaultRule {
        trigger: FaultTrigger::NthItem(0),
        kind: InjectedFaultKind::Sticky,
    })
    .unwrap();
    a.enqueue_host("launch", || Ok(())).unwrap();
    let e = Event::new(&d).unwrap();
    a.record(&e).unwrap();
    b.wait_event(&e).unwrap();
    let err = a.synchronize().unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Fatal);
    // The waiter completes (with the poison), it does not hang.
    assert_eq!(
        b.synchronize().unwrap_err().category(),
        ErrorCategory::Fatal
    );
    assert_eq!(
        e.synchronize().unwrap_err().category(),
        ErrorCategory::Fatal
    );
    assert!(d.poisoned().is_some());
    let err = DeviceMemory::alloc(&d, 16).unwrap_err();
    assert!(matches!(err, CudaError::DevicePoisoned { .. }), "{err}");
    assert!(a.enqueue_host("more", || Ok(())).is_err());
    // Rebuild: a fresh device works; the old one stays poisoned.
    let d2 = d.rebuild().unwrap();
    assert!(d2.poisoned().is_none());
    let s2 = stream(&d2);
    s2.enqueue_host("ok", || Ok(())).unwrap();
    s2.synchronize().unwrap();
    assert!(d.poisoned().is_some());
}

#[test]
fn panicking_work_is_reported_and_worker_survives() {
    let d = Device::host();
    let s = stream(&d);
    s.enqueue_host("boom", || panic!("kernel bug")).unwrap();
    let after = Arc::new(AtomicUsize::new(0));
    let a2 = Arc::clone(&after);
    s.enqueue_host("after", move || {
        a2.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .unwrap();
    let err = s.synchronize().unwrap_err();
    assert!(
        matches!(&err, CudaError::WorkPanicked { label, message, .. } if label == "boom" && message == "kernel bug"),
        "{err}"
    );
    assert_eq!(after.load(Ordering::SeqCst), 1);
    s.synchronize().unwrap();
}

#[test]
fn dropping_a_stream_drains_pending_work() {
    let d = Device::host();
    let done = Arc::new(AtomicUsize::new(0));
    {
        let s = stream(&d);
        for _ in 0..50 {
            let c = Arc::clone(&done);
            s.enqueue_host("slow", move || {
                std::thread::sleep(Duration::from_micros(200));
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        }
    }
    assert_eq!(done.load(Ordering::SeqCst), 50);
}

#[test]
fn memory_held_by_pending_work_outlives_its_handle() {
    let d = Device::host_with(HostDeviceOptions {
        capacity: 1 << 20,
        threads: 1,
        ..HostDeviceOptions::default()
    });
    let s = stream(&d);
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = Arc::clone(&gate);
    s.enqueue_host("block", move || {
        g.wait();
        Ok(())
    })
    .unwrap();
    let m = DeviceMemory::alloc(&d, 4096).unwrap();
    s.memset(&m.as_slice(), 1).unwrap();
    drop(m); // the pending memset still holds the allocation
    assert_eq!(d.memory_used(), 4096);
    gate.wait();
    s.synchronize().unwrap();
    drop(s);
    assert_eq!(d.memory_used(), 0);
}

#[test]
fn bad_arguments_are_typed_permanent_errors() {
    let d = Device::host();
    let other = Device::host();
    let s = stream(&d);
    let a = DeviceMemory::alloc(&d, 64).unwrap();
    let b = DeviceMemory::alloc(&d, 32).unwrap();
    let foreign = DeviceMemory::alloc(&other, 64).unwrap();
    for err in [
        s.copy(&a.as_slice(), &b.as_slice()).unwrap_err(),
        s.copy(&a.as_slice(), &foreign.as_slice()).unwrap_err(),
        s.upload(vec![0u8; 3], &b.as_slice()).unwrap_err(),
        a.slice(10..100).unwrap_err(),
        s.record(&Event::new(&other).unwrap()).unwrap_err(),
        s.copy(&a.slice(0..32).unwrap(), &a.slice(16..48).unwrap())
            .unwrap_err(),
    ] {
        assert!(matches!(err, CudaError::InvalidArgument { .. }), "{err}");
        assert_eq!(err.category(), ErrorCategory::Permanent);
    }
}

#[test]
fn device_enumeration_always_has_a_host_device() {
    let all = Device::enumerate();
    assert!(all
        .iter()
        .any(|i| i.backend == aegis_cuda::BackendKind::Host));
    let d = Device::best_available();
    assert!(d.info().total_memory > 0);
    let s = Stream::new(&d, StreamPriority::HIGH).unwrap();
    assert_eq!(s.priority(), StreamPriority::HIGH);
}

/// CPU time (ns) the kernel has accounted to thread `tid` of this process so far.
#[cfg(target_os = "linux")]
fn thread_cpu_ns(tid: &str) -> Option<u64> {
    let st = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    st.split_whitespace().next()?.parse().ok()
}

/// The worker's post-drain polling is bounded: right after a burst it may poll for its
/// `stream_linger` window, but an idle stream then parks and burns no CPU. A worker that
/// kept polling would accumulate ~100 ms of CPU time over the 100 ms sleep.
#[cfg(target_os = "linux")]
#[rstest]
#[case(Duration::ZERO)]
#[case(Duration::from_micros(15))]
#[case(Duration::from_millis(2))]
fn idle_stream_worker_parks_after_its_linger_window(#[case] linger: Duration) {
    let d = Device::host_with(HostDeviceOptions {
        stream_linger: linger,
        ..HostDeviceOptions::default()
    });
    let s = stream(&d);
    // The worker's thread id, read on the worker itself (other tests' workers share its name).
    let tid = Arc::new(Mutex::new(String::new()));
    let t2 = Arc::clone(&tid);
    s.enqueue_host("tid", move || {
        let link = std::fs::read_link("/proc/thread-self").unwrap_or_default();
        *t2.lock().unwrap() = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(())
    })
    .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let r = Arc::clone(&ran);
        s.enqueue_host("tick", move || {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    }
    s.synchronize().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 100);
    // Past the window, the worker must be parked.
    std::thread::sleep(linger + Duration::from_millis(20));
    let tid = tid.lock().unwrap().clone();
    let Some(before) = thread_cpu_ns(&tid) else {
        panic!("worker thread '{tid}' not found in /proc/self/task");
    };
    std::thread::sleep(Duration::from_millis(100));
    let after = thread_cpu_ns(&tid).expect("worker still alive");
    let burned = Duration::from_nanos(after.saturating_sub(before));
    assert!(
        burned < Duration::from_millis(10),
        "idle worker used {burned:?} of CPU in 100 ms (linger {linger:?})"
    );
}
