//! Loom models of the pool's budget accounting: under every interleaving (preemption bound
//! 3) bytes in use never exceed the budget, and everything reserved comes back.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p aegis-memory --test loom_pool --release`
#![cfg(loom)]

use aegis_cuda::sync::{thread, Arc};
use aegis_cuda::{Device, HostDeviceOptions};
use aegis_memory::{BudgetCounter, DeviceMemoryPool, MemoryError};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn budget_is_never_exceeded() {
    model(|| {
        let budget = 10;
        let counter = Arc::new(BudgetCounter::new(budget));
        let workers: Vec<_> = [6u64, 7]
            .into_iter()
            .map(|bytes| {
                let c = Arc::clone(&counter);
                thread::spawn(move || {
                    // Both fit alone, never together: one may fail, and then only with
                    // the true numbers.
                    match BudgetCounter::try_reserve(&c, bytes) {
                        Ok(r) => {
                            assert!(c.stats().in_use <= budget);
                            drop(r);
                            true
                        }
                        Err(MemoryError::BudgetExceeded {
                            requested,
                            available,
                            budget: b,
                        }) => {
                            assert_eq!((requested, b), (bytes, budget));
                            assert!(available < bytes);
                            false
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                })
            })
            .collect();
        let observed = counter.stats();
        assert!(observed.in_use <= budget && observed.peak <= budget);
        let successes = workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .filter(|&ok| ok)
            .count() as u64;
        let end = counter.stats();
        assert_eq!((end.in_use, end.live_allocations), (0, 0));
        assert_eq!(end.total_allocations, successes);
        assert!(successes >= 1);
        assert!(end.peak <= budget);
    });
}

#[test]
fn small_reservations_all_fit_and_return() {
    model(|| {
        let counter = Arc::new(BudgetCounter::new(8));
        let c = Arc::clone(&counter);
        let t = thread::spawn(move || {
            let r = BudgetCounter::try_reserve(&c, 4).unwrap();
            assert!(c.stats().in_use <= 8);
            drop(r);
        });
        let r = BudgetCounter::try_reserve(&counter, 4).unwrap();
        assert!(counter.stats().in_use <= 8);
        drop(r);
        t.join().unwrap();
        let s = counter.stats();
        assert_eq!((s.in_use, s.total_allocations), (0, 2));
        assert!(s.peak == 4 || s.peak == 8);
    });
}

#[test]
fn pool_allocations_respect_the_budget() {
    model(|| {
        let device = Device::host_with(HostDeviceOptions {
            capacity: 1 << 20,
            threads: 1,
            ..HostDeviceOptions::default()
        });
        let pool = DeviceMemoryPool::new(&device, 512);
        let p = pool.clone();
        let t = thread::spawn(move || p.allocate(300).map(|b| b.len()).ok());
        let mine = pool.allocate(300).map(|b| b.len()).ok();
        let theirs = t.join().unwrap();
        assert!(mine.is_some() || theirs.is_some());
        let s = pool.stats();
        assert_eq!(s.in_use, 0);
        assert!(s.peak <= 512);
        assert_eq!(device.memory_used(), 0);
    });
}
