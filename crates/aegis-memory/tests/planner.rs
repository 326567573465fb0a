//! Planner behaviour on small hand-made cases.

use aegis_memory::{
    lower_bound, AllocationPlan, Fit, Lifetime, MemoryError, MemoryPlanner, NestHint,
    PlacementOrder, PlanViolation, ShareHint,
};
use rstest::rstest;

/// A xorshift generator from a nonzero state: `next(n)` is in `0..n`.
fn xorshift(mut s: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    }
}

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
    let mut next = xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
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

fn nest(inner: usize, outer: usize, offset: u64) -> NestHint {
    NestHint {
        inner,
        outer,
        offset,
    }
}

/// The plans of `l` without and with `nests` (the latter validated).
fn plain_and_nested(
    l: &[Lifetime],
    nests: impl IntoIterator<Item = NestHint>,
) -> (AllocationPlan, AllocationPlan) {
    let plain = MemoryPlanner::default().plan(l).unwrap();
    let plan = MemoryPlanner::default()
        .with_nest_hints(nests)
        .plan(l)
        .unwrap();
    plan.validate().unwrap();
    (plain, plan)
}

/// A dense block as DenseNet exports it: `c1 = concat(x, a)`, `c2 = concat(c1, b)`. With the
/// nests applied every part sits where the concatenations would copy it, so nothing is
/// copied, and the block takes less than keeping `c1` and `c2` apart.
#[test]
fn concat_chain_nests_its_parts_in_place() {
    let u = 256;
    // x (2u) at step 0, a (u) at 1, c1 (3u) at 2, b (u) at 3 (reads c1), c2 (4u) at 4.
    let l = vec![
        lt(0, 2 * u, 0, 2),
        lt(1, u, 1, 2),
        lt(2, 3 * u, 2, 4),
        lt(3, u, 3, 4),
        lt(4, 4 * u, 4, 5),
    ];
    let nests = [
        nest(0, 2, 0),
        nest(1, 2, 2 * u),
        nest(2, 4, 0),
        nest(3, 4, 3 * u),
    ];
    let (plain, plan) = plain_and_nested(&l, nests);
    assert_eq!(plan.nested.len(), 4);
    let off = |t| plan.offset_of(t).unwrap();
    assert_eq!(off(0), off(4));
    assert_eq!(off(2), off(4));
    assert_eq!(off(1), off(4) + 2 * u);
    assert_eq!(off(3), off(4) + 3 * u);
    assert_eq!(plan.peak_bytes, 4 * u);
    assert!(plan.peak_bytes < plain.peak_bytes, "{plan} vs {plain}");
    assert!(plan.lower_bound_bytes <= plan.peak_bytes);
}

#[test]
fn inconsistent_nests_are_skipped() {
    let u = 256;
    let l = vec![lt(0, u, 0, 1), lt(1, u, 0, 1), lt(2, 2 * u, 1, 2)];
    let cases = [
        // Misaligned.
        vec![nest(0, 2, 4)],
        // Runs past the outer's end.
        vec![nest(0, 2, 2 * u)],
        // Two parts on the same bytes: only the first applies.
        vec![nest(0, 2, 0), nest(1, 2, 0)],
        // A part in two wholes: only the first applies.
        vec![nest(0, 2, 0), nest(0, 1, 0)],
        // A cycle: the second would put the outer inside its own part.
        vec![nest(0, 1, 0), nest(1, 0, 0)],
    ];
    for (k, hints) in cases.into_iter().enumerate() {
        let plan = MemoryPlanner::default()
            .with_nest_hints(hints.clone())
            .plan(&l)
            .unwrap();
        plan.validate().unwrap();
        let expect = if k < 2 { 0 } else { 1 };
        assert!(plan.nested.len() <= expect, "case {k}: {:?}", plan.nested);
        for h in &plan.nested {
            assert_eq!(*h, hints[0], "case {k}");
        }
    }
}

#[test]
fn validate_checks_nested_offsets() {
    let u = 256;
    let l = vec![lt(0, u, 0, 1), lt(1, 2 * u, 1, 2)];
    let mut plan = MemoryPlanner::default()
        .with_nest_hints([nest(0, 1, u)])
        .plan(&l)
        .unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.offset_of(0).unwrap(), plan.offset_of(1).unwrap() + u);
    // The inner moved to the outer's start: an overlap the nest does not allow.
    let o1 = plan.offset_of(1).unwrap();
    plan.offsets[0].1 = o1;
    assert!(matches!(
        plan.validate(),
        Err(MemoryError::InvalidPlan(PlanViolation::Overlap { .. }))
    ));
}

/// Random nests over random lifetimes: whatever the planner applies, the plan is valid and
/// no larger than the plan without hints.
#[rstest]
#[case(1)]
#[case(2)]
#[case(3)]
fn random_nests(#[case] seed: u64) {
    let mut next = xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for _ in 0..50 {
        let n = 12;
        let l: Vec<Lifetime> = (0..n)
            .map(|t| {
                let a = next(20) as usize;
                let b = a + next(6) as usize;
                lt(t, (1 + next(4)) * 256, a, b)
            })
            .collect();
        let nests: Vec<NestHint> = (0..8)
            .map(|_| {
                nest(
                    next(n as u64) as usize,
                    next(n as u64) as usize,
                    next(3) * 256,
                )
            })
            .collect();
        let (plain, plan) = plain_and_nested(&l, nests);
        assert!(plan.peak_bytes <= plain.peak_bytes);
        assert!(plan.lower_bound_bytes <= plan.peak_bytes);
    }
}

/// An activation's in-place output that is a concatenation's part: the input moves into the
/// part's place, so the fused producer and the in-place op need no storage of their own.
#[test]
fn share_into_a_nested_part_moves_the_input_there() {
    let u = 256;
    // s (u) at 0..2 and r (u) at 1..2 are the parts of c (2u) at 2..3; x (u) at 0..1 is r's
    // input, in place.
    let l = vec![
        lt(0, u, 0, 2),
        lt(1, u, 0, 1),
        lt(2, u, 1, 2),
        lt(3, 2 * u, 2, 3),
    ];
    let plan = MemoryPlanner::default()
        .with_nest_hints([nest(0, 3, 0), nest(2, 3, u)])
        .with_share_hints([ShareHint {
            input: 1,
            output: 2,
        }])
        .plan(&l)
        .unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.shared.len(), 1);
    assert_eq!(plan.nested.len(), 2);
    let off = |t| plan.offset_of(t).unwrap();
    assert_eq!(off(1), off(2));
    assert_eq!(off(2), off(3) + u);
    assert_eq!(plan.peak_bytes, 2 * u);
}

/// Nests that cost bytes against the plain plan are dropped, but the share hints are not
/// dropped with them (ShuffleNet: its Concats copy, its reshapes stay free).
#[test]
fn costly_nests_are_dropped_without_the_shares() {
    let u = 256;
    // p (u, 0..4) and q (2u, 3..4) are the parts of c (3u, 4..5); t (4u, 1..2) lives while
    // the nested block would already span p's steps; a (u, 0..1) -> b (u, 1..2) in place.
    let l = vec![
        lt(0, u, 0, 4),
        lt(1, 2 * u, 3, 4),
        lt(2, 3 * u, 4, 5),
        lt(3, 4 * u, 1, 2),
        lt(4, u, 0, 1),
        lt(5, u, 1, 2),
    ];
    let share = ShareHint {
        input: 4,
        output: 5,
    };
    let nests = [nest(0, 2, 0), nest(1, 2, u)];
    let plain = MemoryPlanner::default().plan(&l).unwrap();
    assert_eq!(plain.peak_bytes, 7 * u);
    // The nests alone lose to the plain plan (3u + 4u at step 1, plus a).
    let (_, nested_only) = plain_and_nested(&l, nests);
    assert!(nested_only.nested.is_empty());
    assert_eq!(nested_only.peak_bytes, plain.peak_bytes);
    let plan = MemoryPlanner::default()
        .with_nest_hints(nests)
        .with_share_hints([share])
        .plan(&l)
        .unwrap();
    plan.validate().unwrap();
    assert!(plan.nested.is_empty(), "{plan}");
    assert_eq!(plan.shared, [share]);
    assert_eq!(plan.offset_of(4), plan.offset_of(5));
    assert_eq!(plan.peak_bytes, 6 * u);
    assert!(plan.strategy.ends_with("+share"), "{}", plan.strategy);
}
