//! Memory-aware reordering of the steps.

use aegis_memory::{
    plan_with_reordering, LifetimeAnalyser, MemoryError, MemoryPlanner, StepDependency, TensorUsage,
};

fn t(id: usize, kib: u64, producer: Option<usize>, consumers: &[usize]) -> TensorUsage {
    TensorUsage {
        id,
        size_bytes: kib * 1024,
        producer,
        consumers: consumers.to_vec(),
        is_graph_output: false,
        is_constant: false,
    }
}

/// Two branches that each blow up then shrink, written breadth-first: steps 1 and 2 expand,
/// 3 and 4 shrink, 5 joins. Running each branch to its end first halves the peak.
fn branches() -> (usize, Vec<TensorUsage>) {
    let mut out = t(7, 1, Some(5), &[]);
    out.is_graph_output = true;
    let mut weight = t(8, 4096, None, &[1, 2]);
    weight.is_constant = true;
    let tensors = vec![
        t(0, 1, None, &[0]),
        t(1, 1, Some(0), &[1, 2]),
        t(2, 100, Some(1), &[3]),
        t(3, 100, Some(2), &[4]),
        t(4, 1, Some(3), &[5]),
        t(5, 1, Some(4), &[5]),
        out,
        weight,
    ];
    (6, tensors)
}

fn position(order: &[usize], step: usize) -> usize {
    order.iter().position(|&s| s == step).unwrap()
}

#[test]
fn reordering_lowers_the_peak() {
    let (steps, tensors) = branches();
    let planner = MemoryPlanner::default();
    let given = planner
        .plan(&LifetimeAnalyser::analyse(steps, &tensors).unwrap())
        .unwrap();
    let re = plan_with_reordering(&planner, steps, &tensors, &[]).unwrap();
    re.plan.validate().unwrap();
    assert!(!re.is_identity());
    assert!(
        re.plan.peak_bytes < given.peak_bytes,
        "{} vs {}",
        re.plan,
        given
    );
    // Each expand runs right before its shrink.
    assert_eq!(position(&re.order, 3), position(&re.order, 1) + 1);
    assert_eq!(position(&re.order, 4), position(&re.order, 2) + 1);
    // The lifetimes are the analyser's under the new order.
    let mut remapped = tensors.clone();
    let pos: Vec<usize> = (0..steps).map(|s| position(&re.order, s)).collect();
    for u in &mut remapped {
        u.producer = u.producer.map(|p| pos[p]);
        u.consumers.iter_mut().for_each(|c| *c = pos[*c]);
    }
    assert_eq!(
        re.lifetimes,
        LifetimeAnalyser::analyse(steps, &remapped).unwrap()
    );
    // Deterministic.
    let again = plan_with_reordering(&planner, steps, &tensors, &[]).unwrap();
    assert_eq!((again.order, again.plan), (re.order, re.plan));
}

#[test]
fn extra_dependencies_are_respected() {
    let (steps, tensors) = branches();
    let planner = MemoryPlanner::default();
    // Force the second expand before the first shrink: the breadth-first order is required.
    let deps = [StepDependency {
        before: 2,
        after: 3,
    }];
    let re = plan_with_reordering(&planner, steps, &tensors, &deps).unwrap();
    re.plan.validate().unwrap();
    assert!(position(&re.order, 2) < position(&re.order, 3));
    let given = planner
        .plan(&LifetimeAnalyser::analyse(steps, &tensors).unwrap())
        .unwrap();
    assert_eq!(re.plan.peak_bytes, given.peak_bytes);
}

#[test]
fn given_order_violating_a_dependency_is_not_kept() {
    let (steps, tensors) = branches();
    let deps = [StepDependency {
        before: 4,
        after: 3,
    }];
    let re = plan_with_reordering(&MemoryPlanner::default(), steps, &tensors, &deps).unwrap();
    assert!(position(&re.order, 4) < position(&re.order, 3));
    assert_ne!(re.heuristic, "given");
}

#[test]
fn bad_dependencies_are_typed_errors() {
    let (steps, tensors) = branches();
    let p = MemoryPlanner::default();
    assert!(matches!(
        plan_with_reordering(
            &p,
            steps,
            &tensors,
            &[StepDependency {
                before: 5,
                after: 0
            }]
        ),
        Err(MemoryError::CyclicDependencies { .. })
    ));
    assert!(matches!(
        plan_with_reordering(
            &p,
            steps,
            &tensors,
            &[StepDependency {
                before: 0,
                after: 9
            }]
        ),
        Err(MemoryError::DependencyOutOfRange { after: 9, .. })
    ));
    assert!(matches!(
        plan_with_reordering(
            &p,
            steps,
            &tensors,
            &[StepDependency {
                before: 2,
                after: 2
            }]
        ),
        Err(MemoryError::CyclicDependencies { .. })
    ));
    assert!(matches!(
        plan_with_reordering(&p, 2, &tensors, &[]),
        Err(MemoryError::StepOutOfRange { .. })
    ));
}

#[test]
fn empty_graph() {
    let re = plan_with_reordering(&MemoryPlanner::default(), 0, &[], &[]).unwrap();
    assert!(re.order.is_empty() && re.is_identity());
    assert_eq!(re.plan.peak_bytes, 0);
}
