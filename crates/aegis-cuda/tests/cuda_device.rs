#![cfg(feature = "cuda")]
//! CUDA backend: devices, memory, copies, events and streams — the host suite's semantics on
//! a GPU. Needs a CUDA GPU (run through `.gpu-bin/run-all.sh`, see `cargo xtask gpu-build`).

mod cuda_common;

use std::time::Duration;

use aegis_cuda::{
    BackendKind, Categorized, CudaError, Device, DeviceMemory, ErrorCategory, Event, HostBuffer,
    KernelArgs, Stream, StreamPriority,
};
use cuda_common::*;

#[test]
fn device_reports_itself_and_is_enumerated() {
    let d = device();
    let info = d.info();
    assert_eq!(info.backend, BackendKind::Cuda);
    assert_eq!(d.backend(), BackendKind::Cuda);
    assert!(info.total_memory > 0);
    assert!(info.parallelism > 0, "SM count");
    let (major, _) = info.compute_capability.unwrap();
    assert!(major >= 3, "{info:?}");
    assert!(Device::enumerate()
        .iter()
        .any(|i| i.backend == BackendKind::Cuda && i.name == info.name));
    assert!(d.same_as(&d.clone()) && !d.same_as(&Device::host()));
    assert!(d.memory_free() > 0 && d.memory_free() <= info.total_memory);
    println!("device: {info:?}");
}

#[test]
fn copies_round_trip_through_device_and_pinned_staging() {
    let d = device();
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    for n in [1usize, 1000, 1 << 20] {
        // 4 MiB staging buffers are page-locked, small ones are not: both paths.
        let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
        let a = DeviceMemory::alloc(&d, n * 4).unwrap();
        let b = DeviceMemory::alloc(&d, n * 4).unwrap();
        s.upload(f32_bytes(&data), &a.as_slice()).unwrap();
        s.copy(&a.as_slice(), &b.as_slice()).unwrap();
        let staging = HostBuffer::alloc(&d, n * 4).unwrap();
        staging.write().unwrap().fill(0);
        s.copy(&b.as_slice(), &staging.as_slice()).unwrap();
        s.synchronize().unwrap();
        let back: Vec<f32> = bytemuck::cast_slice::<u8, f32>(&staging.read().unwrap()).to_vec();
        assert_eq!(back, data, "n = {n}");
        // Host -> device from a staging buffer.
        let c = DeviceMemory::alloc(&d, n * 4).unwrap();
        s.copy(&staging.as_slice(), &c.as_slice()).unwrap();
        assert_eq!(read_f32(&s, &c.as_slice()), data);
    }
}

#[test]
fn allocations_are_zeroed_and_memset_fills() {
    let d = device();
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let m = DeviceMemory::alloc(&d, 4096).unwrap();
    assert_eq!(read_f32(&s, &m.as_slice()), vec![0.0; 1024]);
    s.memset(&m.slice(1024..2048).unwrap(), 0xff).unwrap();
    let host = HostBuffer::alloc(&d, 4096).unwrap();
    s.download(&m.as_slice(), &host.as_slice()).unwrap();
    s.synchronize().unwrap();
    let bytes = host.read().unwrap();
    assert!(bytes[..1024].iter().all(|&b| b == 0));
    assert!(bytes[1024..2048].iter().all(|&b| b == 0xff));
    assert!(bytes[2048..].iter().all(|&b| b == 0));
}

#[test]
fn host_only_operations_are_wrong_backend() {
    let d = device();
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let m = DeviceMemory::alloc(&d, 64).unwrap();
    assert!(matches!(
        m.as_slice().host_read("t"),
        Err(CudaError::WrongBackend { .. })
    ));
    assert!(matches!(
        m.as_slice().host_write("t"),
        Err(CudaError::WrongBackend { .. })
    ));
    assert!(matches!(
        s.enqueue_host("t", || Ok(())),
        Err(CudaError::WrongBackend { .. })
    ));
    let host_dev = Device::host();
    let foreign = DeviceMemory::alloc(&host_dev, 64).unwrap();
    assert!(matches!(
        s.copy(&foreign.as_slice(), &m.as_slice()),
        Err(CudaError::InvalidArgument { .. })
    ));
}

#[test]
fn exhaustion_is_transient_and_the_device_stays_usable() {
    let d = device();
    let total = d.info().total_memory as usize;
    let used_before = d.memory_used();
    let err = DeviceMemory::alloc(&d, total * 2).unwrap_err();
    assert!(matches!(err, CudaError::OutOfMemory { .. }), "{err}");
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert!(d.poisoned().is_none());
    let m = DeviceMemory::alloc(&d, 1 << 20).unwrap();
    assert_eq!(d.memory_used(), used_before + (1 << 20));
    drop(m);
    assert_eq!(d.memory_used(), used_before);
}

#[test]
fn event_orders_work_across_streams() {
    let d = device();
    let k = kernels(&d);
    let producer = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let consumer = Stream::new(&d, StreamPriority::HIGH).unwrap();
    let n = 1u32 << 16;
    let x = DeviceMemory::alloc(&d, n as usize * 4).unwrap();
    let y = DeviceMemory::alloc(&d, n as usize * 4).unwrap();
    let counter = DeviceMemory::alloc(&d, 4).unwrap();
    // ~50 ms of spinning first: without the event wait the consumer would copy zeros.
    producer
        .launch(
            &k.spin,
            1,
            1,
            0,
            &KernelArgs::new()
                .u64(cycles_for_ms(50))
                .slice(&counter.as_slice()),
        )
        .unwrap();
    producer
        .launch(
            &k.fill,
            aegis_cuda::Dim3::cover(n as usize, 256),
            256,
            0,
            &KernelArgs::new().slice(&x.as_slice()).f32(7.0).u32(n),
        )
        .unwrap();
    let ready = Event::new(&d).unwrap();
    producer.record(&ready).unwrap();
    consumer.wait_event(&ready).unwrap();
    consumer.copy(&x.as_slice(), &y.as_slice()).unwrap();
    let got = read_f32(&consumer, &y.as_slice());
    assert!(got.iter().all(|&v| v == 7.0));
    assert!(ready.query());
    producer.synchronize().unwrap();
}

#[test]
fn events_time_work_and_refuse_incomplete_measurements() {
    let d = device();
    let k = kernels(&d);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let counter = DeviceMemory::alloc(&d, 4).unwrap();
    let (start, end) = (Event::new(&d).unwrap(), Event::new(&d).unwrap());
    s.record(&start).unwrap();
    s.launch(
        &k.spin,
        1,
        1,
        0,
        &KernelArgs::new()
            .u64(cycles_for_ms(20))
            .slice(&counter.as_slice()),
    )
    .unwrap();
    s.record(&end).unwrap();
    // Still spinning: not measurable yet (unless this thread was descheduled for 20 ms).
    if !end.query() {
        assert!(matches!(
            end.elapsed_since(&start),
            Err(CudaError::NotReady { .. })
        ));
    }
    end.synchronize().unwrap();
    assert!(end.query());
    let t = end.elapsed_since(&start).unwrap();
    assert!(
        t > Duration::from_millis(1) && t < Duration::from_secs(10),
        "{t:?}"
    );
    println!("spin of ~20 ms measured {t:?}");
    let counts: Vec<u32> = {
        let h = HostBuffer::alloc(&d, 4).unwrap();
        s.download(&counter.as_slice(), &h.as_slice()).unwrap();
        s.synchronize().unwrap();
        let b = h.read().unwrap();
        bytemuck::cast_slice::<u8, u32>(&b).to_vec()
    };
    assert_eq!(counts, vec![1]);
}

#[test]
fn callbacks_run_after_prior_work_and_report_panics() {
    let d = device();
    let k = kernels(&d);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let counter = DeviceMemory::alloc(&d, 4).unwrap();
    let done = Event::new(&d).unwrap();
    s.launch(
        &k.spin,
        1,
        1,
        0,
        &KernelArgs::new()
            .u64(cycles_for_ms(10))
            .slice(&counter.as_slice()),
    )
    .unwrap();
    s.record(&done).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let done2 = done.clone();
    s.callback("notify", move || {
        tx.send(done2.query()).unwrap();
    })
    .unwrap();
    let event_done_when_called = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        event_done_when_called,
        "callback ran before the work it follows"
    );
    s.callback("boom", || panic!("callback panic")).unwrap();
    // The panic is recorded by the callback thread shortly after the stream passes it.
    let mut err = None;
    for _ in 0..2000 {
        match s.synchronize() {
            Err(e) => {
                err = Some(e);
                break;
            }
            Ok(()) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let err = err.expect("the callback's panic was never reported");
    assert!(matches!(err, CudaError::WorkPanicked { .. }), "{err}");
}

#[test]
fn dropping_memory_while_work_is_pending_is_safe() {
    let d = device();
    let k = kernels(&d);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let counter = DeviceMemory::alloc(&d, 4).unwrap();
    let n = 1u32 << 20;
    let x = DeviceMemory::alloc(&d, n as usize * 4).unwrap();
    s.launch(
        &k.spin,
        1,
        1,
        0,
        &KernelArgs::new()
            .u64(cycles_for_ms(20))
            .slice(&counter.as_slice()),
    )
    .unwrap();
    s.launch(
        &k.fill,
        aegis_cuda::Dim3::cover(n as usize, 256),
        256,
        0,
        &KernelArgs::new().slice(&x.as_slice()).f32(1.0).u32(n),
    )
    .unwrap();
    let used = d.memory_used();
    drop(x); // the stream still holds it
    assert_eq!(d.memory_used(), used);
    s.synchronize().unwrap();
    assert_eq!(d.memory_used(), used - u64::from(n) * 4);
    assert!(d.poisoned().is_none());
}
