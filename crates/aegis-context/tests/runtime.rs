//! The Runtime facade on real models: scheduled inference, per-model serialisation, a fatal
//! fault during a three-model run (no request lost), rebuild, fit.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use aegis_context::{BudgetLimits, ContextError, ContextState, PolicyKind, Runtime};
use aegis_cuda::{Categorized, FaultRule, FaultTrigger, HostDeviceOptions, InjectedFaultKind};
use aegis_sched::{Priority, RequestError};
use common::*;

const GIB: u64 = 1 << 30;

fn runtime(streams: usize) -> Runtime {
    runtime_with(streams, false)
}

fn runtime_with(streams: usize, inline_dispatch: bool) -> Runtime {
    Runtime::builder()
        .host(HostDeviceOptions {
            capacity: 4 * GIB,
            threads: 2,
            ..HostDeviceOptions::default()
        })
        .streams(streams)
        .threads(2)
        .policy(PolicyKind::Fifo)
        .inline_dispatch(inline_dispatch)
        .build()
        .unwrap()
}

/// Both dispatch modes: by the scheduling thread, and by a submitter that finds it idle.
#[rstest::rstest]
fn scheduled_inferences_are_correct_and_serialised_per_model(
    #[values(false, true)] inline_dispatch: bool,
) {
    let rt = runtime_with(3, inline_dispatch);
    let a = rt
        .load(model_path(SQUEEZE).as_path(), BudgetLimits::new(GIB, 1))
        .unwrap();
    let c = rt
        .load_as(PPOCR, load(PPOCR), BudgetLimits::new(GIB, 1))
        .unwrap();
    assert_eq!(a.id(), SQUEEZE);
    let (ia, ic) = (reference_input(SQUEEZE), reference_input(PPOCR));
    let mut handles = Vec::new();
    for i in 0..6 {
        handles.push((
            SQUEEZE,
            rt.submit(&a, vec![ia.clone()], Priority(i), None).unwrap(),
        ));
        handles.push((
            PPOCR,
            rt.submit(&c, vec![ic.clone()], Priority::NORMAL, None)
                .unwrap(),
        ));
    }
    for (model, h) in handles {
        let done = h.wait().unwrap();
        // Three streams but one arena per model: overlapping runs would corrupt outputs.
        assert!(
            max_abs_diff(&done.outputs[0], &reference_output(model)) < 1e-3,
            "{model}"
        );
    }
    let out = rt.infer(&a, vec![ia]).unwrap();
    assert!(max_abs_diff(&out[0], &reference_output(SQUEEZE)) < 1e-3);
    let health = rt.health();
    assert!(health.healthy());
    assert_eq!(health.outstanding, 0);
    let m = rt.context(&a).unwrap().metrics();
    assert_eq!(m.inferences, 1 + 6 + 1, "warm-up + 6 scheduled + 1 infer");
    assert_eq!(m.peak_streams, 1);
    assert!(matches!(
        rt.load_as(PPOCR, load(PPOCR), BudgetLimits::new(GIB, 1)),
        Err(ContextError::DuplicateModel { .. })
    ));
}

#[test]
fn sticky_fault_in_a_three_model_run_loses_no_request_and_rebuild_recovers() {
    let rt = runtime(2);
    let models = [SQUEEZE, TV_SQUEEZE, PPOCR];
    let handles: Vec<_> = models
        .iter()
        .map(|m| rt.load_as(m, load(m), BudgetLimits::new(GIB, 1)).unwrap())
        .collect();
    let inputs: Vec<_> = models.iter().map(|m| reference_input(m)).collect();
    // Poison the device a few dozen work items into the run.
    rt.backend()
        .device()
        .inject_fault(FaultRule {
            trigger: FaultTrigger::NthItem(60),
            kind: InjectedFaultKind::Sticky,
        })
        .unwrap();
    let mut pending = Vec::new();
    let mut refused = 0;
    for round in 0..5 {
        for (i, h) in handles.iter().enumerate() {
            match rt.submit(h, vec![inputs[i].clone()], Priority::NORMAL, None) {
                Ok(p) => pending.push((round, i, p)),
                // Once the device is lost, new work is refused with a typed error.
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            ContextError::DevicePoisoned { .. } | ContextError::NotReady { .. }
                        ),
                        "{e}"
                    );
                    refused += 1;
                }
            }
        }
    }
    let (mut ok, mut failed) = (0, 0);
    for (_, i, p) in pending {
        match p.wait_timeout(Duration::from_secs(30)) {
            Err(_) => panic!("request lost (no outcome in 30 s)"),
            Ok(Ok(done)) => {
                assert!(max_abs_diff(&done.outputs[0], &reference_output(models[i])) < 1e-3);
                ok += 1;
            }
            Ok(Err(e)) => {
                // Typed: a device failure, a refusal by the faulted context, or the poison.
                assert!(
                    matches!(
                        &e,
                        ContextError::Request { source, .. }
                            if matches!(**source, RequestError::Device { .. } | RequestError::Workload { .. })
                    ),
                    "{e}"
                );
                failed += 1;
            }
        }
    }
    assert_eq!(ok + failed + refused, 15);
    assert!(failed >= 1, "the fault must hit a request");
    let health = rt.health();
    assert!(health.device_lost.as_ref().is_some_and(|f| f.is_fatal()));
    for m in &health.models {
        assert_eq!(m.state, ContextState::Faulted, "{}", m.model);
        assert!(m.fault.as_ref().is_some_and(|f| f.is_fatal()));
    }
    let e = rt.infer(&handles[2], vec![inputs[2].clone()]).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(matches!(
        rt.reset(&handles[0]),
        Err(ContextError::DevicePoisoned { .. })
    ));

    let report = rt.rebuild().unwrap();
    assert_eq!(report.generation, 1);
    assert_eq!(report.drained.outstanding(), 0);
    assert!(rt.health().healthy());
    for (i, h) in handles.iter().enumerate() {
        let out = rt.infer(h, vec![inputs[i].clone()]).unwrap();
        assert!(max_abs_diff(&out[0], &reference_output(models[i])) < 1e-3);
    }
}

#[test]
fn recoverable_fault_in_one_model_leaves_the_others_running() {
    let rt = runtime(2);
    let a = rt
        .load_as(SQUEEZE, load(SQUEEZE), BudgetLimits::new(GIB, 1))
        .unwrap();
    let c = rt
        .load_as(PPOCR, load(PPOCR), BudgetLimits::new(GIB, 1))
        .unwrap();
    rt.backend()
        .device()
        .inject_fault(FaultRule {
            trigger: FaultTrigger::NthItem(2),
            kind: InjectedFaultKind::Recoverable,
        })
        .unwrap();
    let e = rt.infer(&a, vec![reference_input(SQUEEZE)]).unwrap_err();
    assert_eq!(e.category(), aegis_cuda::ErrorCategory::Transient, "{e}");
    let ctx = rt.context(&a).unwrap();
    assert_eq!(ctx.state(), ContextState::Faulted);
    // The runtime gave the context the precise error from the stream.
    assert!(
        ctx.last_fault().unwrap().message.contains("injected"),
        "{:?}",
        ctx.last_fault()
    );
    assert_eq!(rt.context(&c).unwrap().state(), ContextState::Ready);
    rt.infer(&c, vec![reference_input(PPOCR)]).unwrap();
    assert!(matches!(
        rt.submit(&a, vec![reference_input(SQUEEZE)], Priority::NORMAL, None),
        Err(ContextError::NotReady {
            state: ContextState::Faulted,
            ..
        })
    ));
    rt.reset(&a).unwrap();
    rt.infer(&a, vec![reference_input(SQUEEZE)]).unwrap();
    assert!(rt.health().healthy());
}

#[test]
fn fit_reports_totals_and_arena_sharing() {
    let rt = runtime(1);
    for m in [SQUEEZE, PPOCR] {
        rt.load_as(m, load(m), BudgetLimits::new(GIB, 1)).unwrap();
    }
    let f = rt.fit().unwrap();
    assert_eq!(f.models.len(), 2);
    assert!(f.fits);
    let arenas: Vec<u64> = f.models.iter().map(|m| m.arena_bytes).collect();
    assert_eq!(f.sum_of_arenas, arenas.iter().sum::<u64>());
    assert_eq!(f.shared_arena_bytes, *arenas.iter().max().unwrap());
    assert_eq!(f.arena_saving, f.sum_of_arenas - f.shared_arena_bytes);
    assert_eq!(f.shared_total_bytes, f.total_bytes - f.arena_saving);
    for m in &f.models {
        assert_eq!(
            m.total_bytes,
            m.weights_bytes + m.arena_bytes + m.workspace_bytes
        );
    }
    let small = aegis_context::fit_check(
        f.total_bytes - 1,
        &[aegis_context::FitModel {
            model: "a".into(),
            graph: load(SQUEEZE),
            limits: Some(BudgetLimits::new(1024, 1)),
        }],
        &aegis_exec::ExecOptions {
            streams: 1,
            threads: 2,
        },
        1,
    )
    .unwrap();
    assert!(!small.models[0].fits_budget);
    assert!(!small.fits);
}
