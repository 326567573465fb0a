//! ExecutionContext on real models: validation, admission, execution, faults, isolation,
//! drop, concurrency of budgets.
#![cfg(not(loom))]

mod common;

use std::sync::Arc;
use std::thread;

use aegis_context::{
    Backend, BudgetLimits, ContextError, ContextState, ExecutionContext, Resource, ResourceBudget,
};
use aegis_cuda::{
    Categorized, Device, ErrorCategory, FaultRule, FaultTrigger, HostDeviceOptions,
    InjectedFaultKind,
};
use aegis_exec::ExecOptions;
use common::*;

const GIB: u64 = 1 << 30;

fn backend(models: &[&str]) -> Backend {
    let device = Device::host_with(HostDeviceOptions {
        capacity: 4 * GIB,
        threads: 2,
        ..HostDeviceOptions::default()
    });
    let b = Backend::new(
        device,
        ExecOptions {
            streams: 1,
            threads: 2,
        },
    );
    for m in models {
        b.register(m, load(m)).unwrap();
    }
    b
}

#[test]
fn create_validates_its_arguments() {
    let b = backend(&[SQUEEZE]);
    let err = |limits, model: &str| ExecutionContext::create(model, limits, &b).unwrap_err();
    assert!(matches!(
        err(BudgetLimits::new(0, 1), SQUEEZE),
        ContextError::ZeroBudget {
            resource: Resource::Memory
        }
    ));
    assert!(matches!(
        err(BudgetLimits::new(GIB, 0), SQUEEZE),
        ContextError::ZeroBudget {
            resource: Resource::Streams
        }
    ));
    assert!(matches!(
        err(BudgetLimits::new(8 * GIB, 1), SQUEEZE),
        ContextError::ImpossibleBudget {
            resource: Resource::Memory,
            requested: r,
            available: a
        } if r == 8 * GIB && a == 4 * GIB
    ));
    assert!(matches!(
        err(BudgetLimits::new(GIB, 65), SQUEEZE),
        ContextError::ImpossibleBudget {
            resource: Resource::Streams,
            ..
        }
    ));
    match err(BudgetLimits::new(GIB, 1), "nope") {
        ContextError::UnknownModel { model, known } => {
            assert_eq!(model, "nope");
            assert_eq!(known, vec![SQUEEZE.to_owned()]);
        }
        e => panic!("{e}"),
    }
    // Admission: the exact shortfall, before anything is allocated.
    let req = aegis_context::requirement_for(
        &b.graph(SQUEEZE).unwrap(),
        &ExecOptions {
            streams: 1,
            threads: 2,
        },
    )
    .unwrap();
    let budget = req.total() - 1000;
    match err(BudgetLimits::new(budget, 1), SQUEEZE) {
        e @ ContextError::InsufficientBudget { .. } => {
            let ContextError::InsufficientBudget {
                required,
                shortfall,
                budget: got,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*required, *shortfall, *got), (req.total(), 1000, budget));
            assert_eq!(e.category(), ErrorCategory::Permanent);
        }
        e => panic!("{e}"),
    }
    assert_eq!(b.device().memory_used(), 0, "refused contexts hold nothing");
}

#[test]
fn execute_matches_reference_and_counts() {
    let b = backend(&[SQUEEZE]);
    let ctx = ExecutionContext::create(SQUEEZE, BudgetLimits::new(GIB, 1), &b).unwrap();
    assert_eq!(ctx.state(), ContextState::Ready);
    assert_eq!(ctx.model_id(), SQUEEZE);
    let resident = ctx.resident().unwrap().total();
    assert_eq!(ctx.budget().memory_used(), resident);
    let input = reference_input(SQUEEZE);
    for _ in 0..2 {
        let out = ctx.execute(std::slice::from_ref(&input)).unwrap();
        assert!(max_abs_diff(&out[0], &reference_output(SQUEEZE)) < 1e-3);
        assert_eq!(ctx.state(), ContextState::Ready);
    }
    let m = ctx.metrics();
    assert_eq!((m.inferences, m.errors), (2, 0));
    assert!(m.average_time > std::time::Duration::ZERO);
    assert_eq!(m.average_time, m.total_time / 2);
    assert_eq!(m.peak_memory_bytes, resident + input.byte_len() as u64);
    assert_eq!(m.peak_streams, 1);
    // Wrong inputs are the caller's fault: an error, but the context is not faulted.
    let bad = aegis_exec::HostTensor::from_f32(vec![1, 3], &[0.0; 3]).unwrap();
    assert!(matches!(
        ctx.execute(&[bad]),
        Err(ContextError::Execution { .. })
    ));
    assert_eq!(ctx.state(), ContextState::Ready);
    assert!(!ctx.has_fault());
    assert_eq!(ctx.metrics().errors, 1);
    // Drop releases the device memory.
    assert!(b.device().memory_used() > 0);
    drop(ctx);
    assert_eq!(b.device().memory_used(), 0);
}

#[test]
fn recoverable_fault_stays_inside_its_context() {
    let b = backend(&[SQUEEZE, PPOCR]);
    let a = ExecutionContext::create(SQUEEZE, BudgetLimits::new(GIB, 1), &b).unwrap();
    let c = ExecutionContext::create(PPOCR, BudgetLimits::new(GIB, 1), &b).unwrap();
    let ia = [reference_input(SQUEEZE)];
    let ic = [reference_input(PPOCR)];
    b.device()
        .inject_fault(FaultRule {
            trigger: FaultTrigger::NthItem(3),
            kind: InjectedFaultKind::Recoverable,
        })
        .unwrap();
    let e = a.execute(&ia).unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
    assert_eq!(a.state(), ContextState::Faulted);
    assert!(a.has_fault());
    assert_eq!(a.last_fault().unwrap().category, ErrorCategory::Transient);
    // The other context is untouched and keeps working.
    assert_eq!(c.state(), ContextState::Ready);
    assert!(!c.has_fault());
    let out = c.execute(&ic).unwrap();
    assert!(max_abs_diff(&out[0], &reference_output(PPOCR)) < 1e-3);
    // The faulted one refuses work until reset.
    match a.execute(&ia) {
        Err(ContextError::NotReady {
            state: ContextState::Faulted,
            fault: Some(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    a.reset().unwrap();
    assert!(!a.has_fault());
    a.execute(&ia).unwrap();
    // The refusal while Faulted is not a failed inference.
    assert_eq!(a.metrics().errors, 1);
    assert!(matches!(
        a.reset(),
        Err(ContextError::InvalidTransition { .. })
    ));
}

#[test]
fn fatal_fault_faults_every_context_until_rebuild() {
    let b = backend(&[SQUEEZE, PPOCR]);
    let a = ExecutionContext::create(SQUEEZE, BudgetLimits::new(GIB, 1), &b).unwrap();
    let c = ExecutionContext::create(PPOCR, BudgetLimits::new(GIB, 1), &b).unwrap();
    b.device()
        .inject_fault(FaultRule {
            trigger: FaultTrigger::NthItem(2),
            kind: InjectedFaultKind::Sticky,
        })
        .unwrap();
    let e = a.execute(&[reference_input(SQUEEZE)]).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert_eq!(a.state(), ContextState::Faulted);
    assert_eq!(c.state(), ContextState::Faulted);
    assert!(c.last_fault().unwrap().is_fatal());
    assert!(b.health().is_poisoned());
    assert!(matches!(
        c.execute(&[reference_input(PPOCR)]),
        Err(ContextError::DevicePoisoned { .. })
    ));
    assert!(matches!(
        c.reset(),
        Err(ContextError::DevicePoisoned { .. })
    ));
    let generation = b.rebuild_device().unwrap();
    assert_eq!(generation.generation, 1);
    a.rebuild().unwrap();
    c.rebuild().unwrap();
    assert_eq!(
        (a.state(), c.state()),
        (ContextState::Ready, ContextState::Ready)
    );
    let out = c.execute(&[reference_input(PPOCR)]).unwrap();
    assert!(max_abs_diff(&out[0], &reference_output(PPOCR)) < 1e-3);
    a.execute(&[reference_input(SQUEEZE)]).unwrap();
}

#[test]
fn concurrent_execute_runs_one_at_a_time() {
    let b = backend(&[PPOCR]);
    let ctx = Arc::new(ExecutionContext::create(PPOCR, BudgetLimits::new(GIB, 1), &b).unwrap());
    let input = reference_input(PPOCR);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ctx = Arc::clone(&ctx);
            let input = input.clone();
            thread::spawn(move || {
                let mut ok = 0;
                let mut busy = 0;
                for _ in 0..10 {
                    match ctx.execute(std::slice::from_ref(&input)) {
                        Ok(out) => {
                            assert!(max_abs_diff(&out[0], &reference_output(PPOCR)) < 1e-3);
                            ok += 1;
                        }
                        Err(ContextError::NotReady {
                            state: ContextState::Running,
                            ..
                        }) => busy += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let (ok, busy) = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(ok + busy, 40);
    assert!(ok >= 1);
    assert_eq!(ctx.metrics().inferences, ok);
    assert_eq!(ctx.metrics().peak_streams, 1, "never two runs at once");
    assert_eq!(ctx.state(), ContextState::Ready);
}

#[test]
fn budget_stress_never_over_allocates() {
    const LIMIT: u64 = 1000;
    let budget = Arc::new(ResourceBudget::new(BudgetLimits::new(LIMIT, 4)).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let budget = Arc::clone(&budget);
            thread::spawn(move || {
                let mut held = Vec::new();
                let mut refused = 0u64;
                for i in 0..20_000u64 {
                    let size = 1 + (i * 7 + t * 13) % 97;
                    if i % 3 == 2 {
                        if let Some(s) = held.pop() {
                            budget.release_memory(s).unwrap();
                        }
                    } else if budget.allocate_memory(size).is_ok() {
                        assert!(budget.memory_used() <= LIMIT);
                        held.push(size);
                    } else {
                        refused += 1;
                    }
                    if budget.acquire_streams(1).is_ok() {
                        assert!(budget.streams_used() <= 4);
                        budget.release_streams(1).unwrap();
                    }
                }
                for s in held {
                    budget.release_memory(s).unwrap();
                }
                refused
            })
        })
        .collect();
    let refused: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(budget.memory_used(), 0);
    assert_eq!(budget.streams_used(), 0);
    assert!(budget.memory_peak() <= LIMIT);
    assert!(refused > 0, "the stress must actually hit the limit");
    assert!(budget.release_memory(1).is_err());
}
