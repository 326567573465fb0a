//! Planner behaviour on small hand-made cases.

use aegis_memory::{
    lower_bound, Fit, Lifetime, MemoryError, MemoryPlanner, PlacementOrder, PlanViolation,
    ShareHint,
};
use rstest::rstest;

fn lt(tensor: usize, size_bytes: u64, first_step: usize, last_step: usize) -> Lifetime {
    Lifetime {
        tensor,
        size_bytes,
        first_step,
        last_step,
    }
}

/// The case from the issue: A(3,[0,2]) B(3,[2,3]) C(1,[3,4]) D(3,[4,4]), in units of 256 B.
fn tflite_counterexample() -> Vec<Lifetime> {
    let u = 256;
    vec![
        lt(0, 3 * u, 0, 2),
        lt(1, 3 * u, 2, 3),
        lt(2, u, 3, 4),
        lt(3, 3 * u, 4, 4),
    ]
}

#[test]
fn greedy_by_size_is_not_optimal_but_the_planner_is() {
    let l = tflite_counterexample();
    let greedy = MemoryPlanner::default()
        .plan_with(&l, PlacementOrder::Size, Fit::Best)
        .unwrap();
    greedy.validate().unwrap();
    assert_eq!(greedy.peak_bytes, 7 * 256);
    let plan = MemoryPlanner::default().plan(&l).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.lower_bound_bytes, 6 * 256);
    assert_eq!(plan.peak_bytes, 6 * 256);
    assert_eq!(plan.naive_bytes, 10 * 256);
}

#[rstest]
#[case::one_byte(1)]
#[case::cuda(256)]
#[case::page(4096)]
fn offsets_are_aligned(#[case] alignment: u64) {
    let l: Vec<_> = (0..20)
        .map(|i| lt(i, 1 + 37 * i as u64, i / 3, i / 3 + 2))
        .collect();
    let plan = MemoryPlanner::new(alignment).plan(&l).unwrap();
    plan.validate().unwrap();
    assert!(plan.offsets.iter().all(|&(_, o)| o % alignment == 0));
    assert_eq!(plan.lower_bound_bytes, lower_bound(alignment, &l).unwrap());
    assert!(plan.peak_bytes >= plan.lower_bound_bytes);
}

#[rstest]
#[case::zero(0)]
#[case::three(3)]
#[case::not_pow2(384)]
fn bad_alignment_is_rejected(#[case] alignment: u64) {
    let err = MemoryPlanner::new(alignment)
        .plan(&[lt(0, 1, 0, 0)])
        .unwrap_err();
    assert!(matches!(err, MemoryError::InvalidAlignment { alignment: a } if a == alignment));
}

#[test]
fn input_errors_are_typed() {
    let p = MemoryPlanner::default();
    assert!(matches!(
        p.plan(&[lt(1, 8, 0, 1), lt(1, 8, 2, 3)]),
        Err(MemoryError::DuplicateTensor { tensor: 1 })
    ));
    assert!(matches!(
        p.plan(&[lt(1, 8, 3, 1)]),
        Err(MemoryError::InvalidLifetime { tensor: 1, .. })
    ));
    assert!(matches!(
        p.plan(&[lt(1, u64::MAX, 0, 1)]),
        Err(MemoryError::SizeOverflow { .. })
    ));
    assert!(matches!(
        p.plan(&[lt(1, u64::MAX / 2, 0, 1), lt(2, u64::MAX / 2, 0, 1)]),
        Err(MemoryError::SizeOverflow { .. })
    ));
    assert!(matches!(
        p.clone()
            .with_share_hints([ShareHint {
                input: 1,
                output: 9
            }])
            .plan(&[lt(1, 8, 0, 1)]),
        Err(MemoryError::UnknownTensor { tensor: 9 })
    ));
}

#[test]
fn empty_and_zero_sized() {
    let plan = MemoryPlanner::default().plan(&[]).unwrap();
    plan.validate().unwrap();
    assert_eq!((plan.peak_bytes, plan.lower_bound_bytes), (0, 0));
    let plan = MemoryPlanner::default()
        .plan(&[lt(0, 0, 0, 3), lt(1, 10, 0, 3), lt(2, 0, 1, 1)])
        .unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.peak_bytes, 256);
    assert_eq!(plan.offset_of(1), Some(0));
    assert_eq!(plan.offset_of(7), None);
}

#[test]
fn disjoint_lifetimes_share_everything() {
    let l: Vec<_> = (0..10).map(|i| lt(i, 1000, i, i)).collect();
    let plan = MemoryPlanner::default().plan(&l).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.peak_bytes, 1024);
    assert!(plan.offsets.iter().all(|&(_, o)| o == 0));
}

#[test]
fn result_does_not_depend_on_input_order() {
    let mut l: Vec<_> = (0..60)
        .map(|i| {
            lt(
                i * 7 % 61,
                100 + (i as u64 * 7919) % 5000,
                i / 2,
                i / 2 + (i % 5),
            )
        })
        .collect();
    let a = MemoryPlanner::default().plan(&l).unwrap();
    l.reverse();
    let b = MemoryPlanner::default().plan(&l).unwrap();
    a.validate().unwrap();
    // The planner sorts by id first, so the caller's order cannot change the plan.
    assert_eq!(a, b);
}

#[test]
fn in_place_hint_goes_below_the_plain_bound() {
    // x -> relu -> y -> relu -> z: each handover step holds two tensors without sharing.
    let l = vec![lt(0, 1024, 0, 1), lt(1, 1024, 1, 2), lt(2, 1024, 2, 3)];
    let plain = MemoryPlanner::default().plan(&l).unwrap();
    plain.validate().unwrap();
    assert_eq!(plain.peak_bytes, 2048);
    let hints = [
        ShareHint {
            input: 0,
            output: 1,
        },
        ShareHint {
            input: 1,
            output: 2,
        },
    ];
    let shared = MemoryPlanner::default()
        .with_share_hints(hints)
        .plan(&l)
        .unwrap();
    shared.validate().unwrap();
    assert_eq!(shared.peak_bytes, 1024);
    assert_eq!(shared.shared.len(), 2);
    assert!(shared.strategy.contains("share"));
}

#[test]
fn unsafe_hints_are_skipped() {
    // Input 0 is still read at step 3, after output 1 is produced at step 1: no sharing.
    let l = vec![lt(0, 1024, 0, 3), lt(1, 1024, 1, 2)];
    let plan = MemoryPlanner::default()
        .with_share_hints([ShareHint {
            input: 0,
            output: 1,
        }])
        .plan(&l)
        .unwrap();
    plan.validate().unwrap();
    assert!(plan.shared.is_empty());
    assert_eq!(plan.peak_bytes, 2048);
}

#[test]
fn validate_catches_broken_plans() {
    let l = tflite_counterexample();
    let good = MemoryPlanner::default().plan(&l).unwrap();

    let mut overlap = good.clone();
    overlap.offsets[1].1 = overlap.offsets[0].1;
    assert!(matches!(
        overlap.validate(),
        Err(MemoryError::InvalidPlan(
            PlanViolation::Overlap { .. } | PlanViolation::WrongPeak { .. }
        ))
    ));

    let mut misaligned = good.clone();
    misaligned.offsets[2].1 += 1;
    assert!(matches!(
        misaligned.validate(),
        Err(MemoryError::InvalidPlan(PlanViolation::Misaligned {
            tensor: 2,
            ..
        }))
    ));

    let mut peak = good.clone();
    peak.peak_bytes += 256;
    assert!(matches!(
        peak.validate(),
        Err(MemoryError::InvalidPlan(PlanViolation::WrongPeak { .. }))
    ));

    let mut table = good;
    table.offsets.swap(0, 1);
    assert!(matches!(
        table.validate(),
        Err(MemoryError::InvalidPlan(
            PlanViolation::TableMismatch { .. }
        ))
    ));
}

#[test]
fn thousands_of_tensors_alive_together_stay_cheap() {
    // 4,200 tensors alive at once: more conflict pairs than the planner lists, so it scans.
    let l: Vec<_> = (0..4200).map(|i| lt(i, 256, 0, 1 + i % 3)).collect();
    let plan = MemoryPlanner::default().plan(&l).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.peak_bytes, 4200 * 256);
    assert_eq!(plan.peak_bytes, plan.lower_bound_bytes);
}

/// Random small problems: every plan is valid, never above greedy by size, never below the
/// bound, with and without random share hints.
#[rstest]
#[case(1)]
#[case(2)]
#[case(3)]
#[case(4)]
fn random_problems(#[case] seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    for _ in 0..30 {
        let n = 1 + next(40) as usize;
        let l: Vec<_> = (0..n)
            .map(|i| {
                let first = next(20) as usize;
                lt(i, 1 + next(5000), first, first + next(6) as usize)
            })
            .collect();
        let hints: Vec<_> = (0..n / 2)
            .map(|_| ShareHint {
                input: next(n as u64) as usize,
                output: next(n as u64) as usize,
            })
            .collect();
        let greedy = MemoryPlanner::default()
            .plan_with(&l, PlacementOrder::Size, Fit::Best)
            .unwrap();
        let plan = MemoryPlanner::default().plan(&l).unwrap();
        plan.validate().unwrap();
        assert!(plan.peak_bytes <= greedy.peak_bytes);
        assert!(plan.peak_bytes >= plan.lower_bound_bytes);
        let shared = MemoryPlanner::default()
            .with_share_hints(hints)
            .plan(&l)
            .unwrap();
        shared.validate().unwrap();
        assert!(shared.peak_bytes <= plan.peak_bytes);
        assert!(shared.peak_bytes >= shared.lower_bound_bytes);
    }
}
