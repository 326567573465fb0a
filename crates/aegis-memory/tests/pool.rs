//! The budgeted pool, its buffers and arenas on the host backend.

use aegis_cuda::{Categorized, Device, ErrorCategory, HostDeviceOptions};
use aegis_memory::{Arena, Lifetime, MemoryError, MemoryPlanner, PlanViolation, DEFAULT_ALIGNMENT};
use rstest::rstest;

fn device(capacity: u64) -> Device {
    Device::host_with(HostDeviceOptions {
        capacity,
        threads: 1,
        ..HostDeviceOptions::default()
    })
}

#[test]
fn budget_is_hard_and_counters_follow() {
    let pool = aegis_memory::DeviceMemoryPool::new(&device(1 << 20), 1000);
    let a = pool.allocate(600).unwrap();
    assert_eq!(a.len(), 600);
    let s = pool.stats();
    assert_eq!(
        (s.in_use, s.peak, s.live_allocations, s.total_allocations),
        (600, 600, 1, 1)
    );
    assert_eq!(s.available(), 400);

    let err = pool.allocate(401).unwrap_err();
    assert!(matches!(
        err,
        MemoryError::BudgetExceeded {
            requested: 401,
            available: 400,
            budget: 1000
        }
    ));
    assert_eq!(err.category(), ErrorCategory::Transient);
    // A failed request leaves nothing behind.
    assert_eq!(pool.stats().in_use, 600);

    let b = pool.allocate(400).unwrap();
    assert_eq!(pool.stats().in_use, 1000);
    drop(a);
    let s = pool.stats();
    assert_eq!(
        (s.in_use, s.peak, s.live_allocations, s.total_allocations),
        (400, 1000, 1, 2)
    );
    drop(b);
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(pool.device().memory_used(), 0);
}

#[test]
fn device_out_of_memory_is_typed_and_transient() {
    let pool = aegis_memory::DeviceMemoryPool::new(&device(4096), 1 << 20);
    let held = pool.allocate(4096).unwrap();
    let err = pool.allocate(256).unwrap_err();
    assert!(
        matches!(
            err,
            MemoryError::DeviceOutOfMemory {
                requested: 256,
                free: 0,
                capacity: 4096
            }
        ),
        "{err}"
    );
    assert_eq!(err.category(), ErrorCategory::Transient);
    // The budget reservation of the failed request was given back.
    assert_eq!(pool.stats().in_use, 4096);
    drop(held);
    assert!(pool.allocate(4096).is_ok());
}

#[test]
fn clones_share_one_budget() {
    let pool = aegis_memory::DeviceMemoryPool::new(&device(1 << 20), 512);
    let other = pool.clone();
    let _a = pool.allocate(512).unwrap();
    assert!(matches!(
        other.allocate(1),
        Err(MemoryError::BudgetExceeded { available: 0, .. })
    ));
}

#[rstest]
#[case::start(0, 16)]
#[case::middle(100, 28)]
#[case::end(112, 16)]
fn buffer_slices_are_checked(#[case] offset: u64, #[case] len: u64) {
    let pool = aegis_memory::DeviceMemoryPool::new(&device(1 << 20), 1 << 20);
    let buf = pool.allocate(128).unwrap();
    let s = buf.slice(offset, len).unwrap();
    assert_eq!((s.offset() as u64, s.len() as u64), (offset, len));
    assert!(matches!(
        buf.slice(offset, 129 - offset),
        Err(MemoryError::OutOfArena { arena_len: 128, .. })
    ));
    assert!(matches!(
        buf.slice(u64::MAX, 2),
        Err(MemoryError::OutOfArena { .. })
    ));
}

fn lifetimes() -> Vec<Lifetime> {
    let lt = |tensor, size_bytes, first_step, last_step| Lifetime {
        tensor,
        size_bytes,
        first_step,
        last_step,
    };
    vec![
        lt(10, 1000, 0, 1),
        lt(11, 300, 1, 2),
        lt(12, 1000, 2, 3),
        lt(13, 40, 0, 3),
    ]
}

#[test]
fn arena_views_follow_the_plan_and_hold_data() {
    let pool = aegis_memory::DeviceMemoryPool::new(&device(1 << 20), 1 << 20);
    let plan = MemoryPlanner::default().plan(&lifetimes()).unwrap();
    let arena = Arena::new(&pool, plan.clone()).unwrap();
    assert_eq!(arena.len(), plan.peak_bytes);
    assert_eq!(pool.stats().in_use, plan.peak_bytes);
    for l in &plan.tensors {
        let v = arena.view(l.tensor).unwrap();
        assert_eq!(v.len() as u64, l.size_bytes);
        assert_eq!(Some(v.offset() as u64), plan.offset_of(l.tensor));
        assert_eq!(v.offset() as u64 % DEFAULT_ALIGNMENT, 0);
    }
    // Tensors alive together never alias: write one, the other is untouched.
    let (a, b) = (arena.view(10).unwrap(), arena.view(13).unwrap());
    assert!(!a.overlaps(&b));
    a.host_write("test").unwrap().fill(7);
    assert!(b.host_read("test").unwrap().iter().all(|&x| x == 0));
    assert!(a.host_read("test").unwrap().iter().all(|&x| x == 7));

    assert!(matches!(
        arena.view(99),
        Err(MemoryError::UnknownTensor { tensor: 99 })
    ));
    drop(arena);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn arena_rejects_bad_plans_and_small_budgets() {
    let plan = MemoryPlanner::default().plan(&lifetimes()).unwrap();
    let small = aegis_memory::DeviceMemoryPool::new(&device(1 << 20), plan.peak_bytes - 1);
    assert!(matches!(
        Arena::new(&small, plan.clone()),
        Err(MemoryError::BudgetExceeded { .. })
    ));
    let mut broken = plan;
    broken.peak_bytes = 1;
    let pool = aegis_memory::DeviceMemoryPool::new(&device(1 << 20), 1 << 20);
    let err = Arena::new(&pool, broken).unwrap_err();
    assert!(matches!(
        err,
        MemoryError::InvalidPlan(PlanViolation::WrongPeak { .. })
    ));
    assert_eq!(err.category(), ErrorCategory::Permanent);
    assert_eq!(pool.stats().total_allocations, 0);
}

#[test]
fn poisoned_device_keeps_its_category() {
    use aegis_cuda::{FaultRule, FaultTrigger, InjectedFaultKind, Stream, StreamPriority};
    let dev = device(1 << 20);
    dev.inject_fault(FaultRule {
        trigger: FaultTrigger::NthItem(0),
        kind: InjectedFaultKind::Sticky,
    })
    .unwrap();
    let stream = Stream::new(&dev, StreamPriority::NORMAL).unwrap();
    let failed = stream.enqueue_host("boom", || Ok(())).is_err() || stream.synchronize().is_err();
    assert!(failed && dev.poisoned().is_some());
    let pool = aegis_memory::DeviceMemoryPool::new(&dev, 1 << 20);
    let err = pool.allocate(64).unwrap_err();
    assert!(matches!(err, MemoryError::Device(_)), "{err}");
    assert_eq!(err.category(), ErrorCategory::Fatal);
    assert_eq!(pool.stats().in_use, 0);
}
