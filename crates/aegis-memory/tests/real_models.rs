//! Every lifetimes file from real models: plan, validate, compare with greedy by size and
//! the lower bound; reordering must stay valid and never lose.

#[path = "common/lifetimes_json.rs"]
mod lifetimes_json;

use aegis_memory::{
    lower_bound, plan_with_reordering, Fit, LifetimeAnalyser, MemoryPlanner, PlacementOrder,
};
use lifetimes_json::{default_dir, files, LifetimesFile};

#[test]
fn every_model_plans_within_greedy_and_bound() {
    let paths = files(&default_dir());
    assert!(
        paths.len() >= 10,
        "expected the shared lifetimes files, found {paths:?}"
    );
    // A small search effort keeps the debug-build test fast; the bench uses the default.
    let planner = MemoryPlanner::default().with_search_effort(300_000);
    for path in &paths {
        let file = LifetimesFile::load(path).unwrap();
        let usages = file.usages();
        let lifetimes = LifetimeAnalyser::analyse(file.steps, &usages).unwrap();
        assert_eq!(lifetimes.len(), file.tensors.len(), "{}", file.model);

        // With byte alignment the bound is exactly the file's own figure.
        assert_eq!(
            lower_bound(1, &lifetimes).unwrap(),
            file.lower_bound_bytes,
            "{}",
            file.model
        );
        let sum: u64 = file.tensors.iter().map(|t| t.size).sum();
        assert_eq!(sum, file.naive_bytes, "{}", file.model);

        let greedy = planner
            .plan_with(&lifetimes, PlacementOrder::Size, Fit::Best)
            .unwrap();
        greedy.validate().unwrap();
        let plan = planner.plan(&lifetimes).unwrap();
        plan.validate().unwrap();
        assert!(
            plan.peak_bytes <= greedy.peak_bytes,
            "{}: {plan} vs {greedy}",
            file.model
        );
        assert!(plan.peak_bytes >= plan.lower_bound_bytes, "{}", file.model);
        assert!(
            plan.lower_bound_bytes >= file.lower_bound_bytes,
            "{}",
            file.model
        );

        let re = plan_with_reordering(&planner, file.steps, &usages, &[]).unwrap();
        re.plan.validate().unwrap();
        assert!(re.plan.peak_bytes <= plan.peak_bytes, "{}", file.model);
        check_is_topological(&re.order, file.steps, &usages);

        // In-place sharing never loses (the plain plan is always a candidate).
        let hinted = planner.clone().with_share_hints(file.inplace_hints());
        let shared = hinted.plan(&lifetimes).unwrap();
        shared.validate().unwrap();
        assert!(shared.peak_bytes <= plan.peak_bytes, "{}", file.model);
        assert!(
            shared.peak_bytes >= shared.lower_bound_bytes,
            "{}",
            file.model
        );
        let both = plan_with_reordering(&hinted, file.steps, &usages, &[]).unwrap();
        both.plan.validate().unwrap();
        assert!(both.plan.peak_bytes <= shared.peak_bytes, "{}", file.model);
    }
}

#[test]
fn op_types_from_names() {
    use lifetimes_json::op_of;
    let cases = [
        ("/layer1/layer1.0/relu/Relu_output_0", Some("relu")),
        (
            "/enc/layers.0/self_attn/Reshape_3_output_0",
            Some("reshape"),
        ),
        ("p2o.pd_op.batch_norm_.0.0", Some("batchnorm")),
        ("Add@12", Some("add")),
        ("Mul.1", Some("mul")),
        ("batch_norm_4.tmp_2", Some("batchnorm")),
        ("elementwise_add_1", Some("elementwiseadd")),
        ("467", None),
    ];
    for (name, op) in cases {
        assert_eq!(op_of(name).as_deref(), op, "{name}");
    }
}

fn check_is_topological(order: &[usize], steps: usize, usages: &[aegis_memory::TensorUsage]) {
    let mut sorted = order.to_vec();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..steps).collect::<Vec<_>>());
    let mut pos = vec![0; steps];
    for (k, &s) in order.iter().enumerate() {
        pos[s] = k;
    }
    for t in usages {
        if let Some(p) = t.producer {
            assert!(t.consumers.iter().all(|&c| pos[c] > pos[p]));
        }
    }
}
