//! Loom model of the budget's compare-and-swap accounting: never over-allocates, never
//! underflows, whatever the interleaving. Run with `RUSTFLAGS="--cfg loom" cargo test -p
//! aegis-context --test loom_budget --release`.
#![cfg(loom)]

use aegis_context::{BudgetLimits, ResourceBudget};
use std::sync::Arc;

use aegis_cuda::sync::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn concurrent_allocations_never_exceed_the_limit() {
    model(|| {
        let budget = Arc::new(ResourceBudget::new(BudgetLimits::new(100, 1)).unwrap());
        let spawn = |bytes| {
            let b = Arc::clone(&budget);
            thread::spawn(move || {
                let ok = b.allocate_memory(bytes).is_ok();
                assert!(b.memory_used() <= 100);
                ok
            })
        };
        let (t1, t2) = (spawn(60), spawn(60));
        let (a, b) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(a ^ b, "exactly one of two 60-byte allocations fits 100");
        assert_eq!(budget.memory_used(), 60);
        assert_eq!(budget.memory_peak(), 60);
    });
}

#[test]
fn concurrent_releases_never_underflow() {
    model(|| {
        let budget = Arc::new(ResourceBudget::new(BudgetLimits::new(100, 2)).unwrap());
        budget.allocate_memory(50).unwrap();
        budget.acquire_streams(1).unwrap();
        let spawn = || {
            let b = Arc::clone(&budget);
            thread::spawn(move || (b.release_memory(50).is_ok(), b.release_streams(1).is_ok()))
        };
        let (t1, t2) = (spawn(), spawn());
        let (a, b) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(
            a.0 ^ b.0,
            "exactly one release of the 50 held bytes succeeds"
        );
        assert!(a.1 ^ b.1, "exactly one release of the held stream succeeds");
        assert_eq!(budget.memory_used(), 0);
        assert_eq!(budget.streams_used(), 0);
    });
}
