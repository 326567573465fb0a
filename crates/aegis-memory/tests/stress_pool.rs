//! Many threads allocating and releasing against one budget: it is never exceeded and
//! everything comes back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use aegis_cuda::{Device, HostDeviceOptions};
use aegis_memory::{BudgetCounter, DeviceMemoryPool, MemoryError};

#[test]
fn counter_under_contention() {
    let budget = 10_000;
    let counter = Arc::new(BudgetCounter::new(budget));
    let over = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (c, over, start) = (Arc::clone(&counter), Arc::clone(&over), Arc::clone(&start));
            std::thread::spawn(move || {
                // All threads race from the same instant.
                start.wait();
                let mut held = Vec::new();
                let mut seed = t * 7919 + 1;
                for i in 0..20_000u64 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let bytes = 1 + (seed >> 33) % 1500;
                    match BudgetCounter::try_reserve(&c, bytes) {
                        Ok(r) => held.push(r),
                        Err(MemoryError::BudgetExceeded { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    if c.stats().in_use > budget {
                        over.store(true, Ordering::Relaxed);
                    }
                    if i % 3 == 0 || held.len() > 4 {
                        held.pop();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(!over.load(Ordering::Relaxed));
    let s = counter.stats();
    assert_eq!((s.in_use, s.live_allocations), (0, 0));
    assert!(s.peak <= budget && s.peak > 0, "{s:?}");
    assert!(s.total_allocations > 0);
}

#[test]
fn pool_under_contention() {
    let device = Device::host_with(HostDeviceOptions {
        capacity: 1 << 24,
        threads: 1,
        ..HostDeviceOptions::default()
    });
    let budget = 64 * 1024;
    let pool = DeviceMemoryPool::new(&device, budget);
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (pool, start) = (pool.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut held = Vec::new();
                let mut failures = 0u64;
                for i in 0..2_000u64 {
                    let bytes = 256 * (1 + (i * 31 + t * 17) % 24);
                    match pool.allocate(bytes) {
                        Ok(b) => held.push(b),
                        Err(MemoryError::BudgetExceeded { .. }) => failures += 1,
                        Err(e) => panic!("{e}"),
                    }
                    assert!(pool.stats().in_use <= budget);
                    if held.len() > 3 {
                        held.remove(0);
                    }
                }
                failures
            })
        })
        .collect();
    let failures: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let s = pool.stats();
    assert_eq!((s.in_use, s.live_allocations), (0, 0));
    assert!(s.peak <= budget);
    assert_eq!(s.total_allocations + failures, 16_000);
    assert_eq!(device.memory_used(), 0);
}
