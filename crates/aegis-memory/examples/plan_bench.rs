//! Planner figures on the real models' lifetimes (not a timed test).
//!
//! `cargo run --release -p aegis-memory --example plan_bench [DIR]`, DIR defaulting to
//! `<workspace>/../shared/models/lifetimes`. For each file: naive sum, TensorFlow Lite's
//! greedy-by-size peak, our peak in file order, our peak with memory-aware reordering, the
//! file-order lower bound, the ratios to it and the planning times; then the means and the
//! time to plan a synthetic 10,000-tensor graph. All plans use 256-byte alignment.

#[path = "../tests/common/lifetimes_json.rs"]
mod lifetimes_json;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aegis_memory::{
    lower_bound, plan_with_reordering, Fit, LifetimeAnalyser, MemoryPlanner, PlacementOrder,
    TensorUsage,
};
use lifetimes_json::{default_dir, files, LifetimesFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(default_dir);
    let paths = files(&dir);
    if paths.is_empty() {
        return Err(format!("no *.json in {}", dir.display()).into());
    }
    let planner = MemoryPlanner::default();
    println!(
        "| model | tensors | naive MiB | greedy-size MiB | ours MiB | reordered MiB | bound MiB | ours/bound | reord/bound | greedy/bound | hints | in-place+reord MiB | /bound | /own bound | plan ms | reorder ms | strategy |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let (mut sum_ours, mut sum_re, mut sum_greedy, mut sum_both, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut at_bound = 0;
    for path in &paths {
        let file = LifetimesFile::load(path)?;
        let usages = file.usages();
        let lifetimes = LifetimeAnalyser::analyse(file.steps, &usages)?;
        let bound = lower_bound(planner.alignment(), &lifetimes)?;
        let greedy = planner.plan_with(&lifetimes, PlacementOrder::Size, Fit::Best)?;
        let (plan, t_plan) = timed(|| planner.plan(&lifetimes));
        let plan = plan?;
        let (re, t_re) = timed(|| plan_with_reordering(&planner, file.steps, &usages, &[]));
        let re = re?;
        plan.validate()?;
        re.plan.validate()?;
        let hints = file.inplace_hints();
        let hinted = planner.clone().with_share_hints(hints.iter().copied());
        let both = plan_with_reordering(&hinted, file.steps, &usages, &[])?;
        both.plan.validate()?;
        let r = |x: u64| x as f64 / bound.max(1) as f64;
        sum_ours += r(plan.peak_bytes);
        sum_re += r(re.plan.peak_bytes);
        sum_both += r(both.plan.peak_bytes);
        sum_greedy += r(greedy.peak_bytes);
        n += 1.0;
        if plan.peak_bytes == bound {
            at_bound += 1;
        }
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} | {} | {:.2} | {:.3} | {:.3} | {:.1} | {:.1} | {} / {} |",
            file.model,
            lifetimes.len(),
            mib(file.naive_bytes),
            mib(greedy.peak_bytes),
            mib(plan.peak_bytes),
            mib(re.plan.peak_bytes),
            mib(bound),
            r(plan.peak_bytes),
            r(re.plan.peak_bytes),
            r(greedy.peak_bytes),
            hints.len(),
            mib(both.plan.peak_bytes),
            r(both.plan.peak_bytes),
            both.plan.ratio_to_bound(),
            ms(t_plan),
            ms(t_re),
            plan.strategy,
            re.heuristic,
        );
    }
    println!(
        "\nmean ratio to the file-order bound: greedy-by-size {:.3}, ours {:.3}, ours+reordering {:.3}, in-place hints (from names)+reordering {:.3}; file order at the bound on {at_bound}/{} models",
        sum_greedy / n,
        sum_ours / n,
        sum_re / n,
        sum_both / n,
        paths.len()
    );

    let (steps, usages) = synthetic(10_000);
    let lifetimes = LifetimeAnalyser::analyse(steps, &usages)?;
    let bound = lower_bound(planner.alignment(), &lifetimes)?;
    let greedy = planner.plan_with(&lifetimes, PlacementOrder::Size, Fit::Best)?;
    let (plan, t_plan) = timed(|| planner.plan(&lifetimes));
    let plan = plan?;
    plan.validate()?;
    let (re, t_re) = timed(|| plan_with_reordering(&planner, steps, &usages, &[]));
    let re = re?;
    for effort in [0u64, 500_000, 1_000_000, 2_000_000] {
        let p = MemoryPlanner::default().with_search_effort(effort);
        let (r, t) = timed(|| p.plan(&lifetimes));
        println!(
            "  search effort {effort}: {:.1} ms, peak/bound {:.4}",
            ms(t),
            r?.peak_bytes as f64 / bound as f64
        );
    }
    println!(
        "synthetic {} tensors: plan {:.1} ms (peak/bound {:.3}, greedy-size {:.3}, {}), with reordering {:.1} ms (peak/bound {:.3})",
        lifetimes.len(),
        ms(t_plan),
        plan.peak_bytes as f64 / bound as f64,
        greedy.peak_bytes as f64 / bound as f64,
        plan.strategy,
        ms(t_re),
        re.plan.peak_bytes as f64 / bound as f64,
    );

    let (steps, usages) = branchy(10_000);
    let lifetimes = LifetimeAnalyser::analyse(steps, &usages)?;
    let bound = lower_bound(planner.alignment(), &lifetimes)?;
    let (plan, t_plan) = timed(|| planner.plan(&lifetimes));
    let plan = plan?;
    let (re, t_re) = timed(|| plan_with_reordering(&planner, steps, &usages, &[]));
    let re = re?;
    re.plan.validate()?;
    println!(
        "synthetic branchy {} tensors / {steps} steps, written breadth-first: plan {:.1} ms (peak/bound {:.3}), with reordering {:.1} ms (peak/file-order bound {:.3}, {})",
        lifetimes.len(),
        ms(t_plan),
        plan.peak_bytes as f64 / bound as f64,
        ms(t_re),
        re.plan.peak_bytes as f64 / bound as f64,
        re.heuristic,
    );
    Ok(())
}

/// Inception-like blocks written breadth-first: four branches each expand the block input
/// into a large tensor then shrink it, and a join step concatenates the small results.
/// The file order runs all four expansions before any shrink.
fn branchy(n: usize) -> (usize, Vec<TensorUsage>) {
    let mut usages = vec![TensorUsage {
        id: 0,
        size_bytes: 64 << 10,
        producer: None,
        consumers: Vec::new(),
        is_graph_output: false,
        is_constant: false,
    }];
    let mut step = 0;
    let mut input = 0;
    while usages.len() + 9 <= n {
        let base = usages.len();
        // Expansions at steps step..step+4, shrinks at step+4..step+8, join at step+8.
        for j in 0..4 {
            usages[input].consumers.push(step + j);
            usages.push(TensorUsage {
                id: base + j,
                size_bytes: (256 + 64 * j as u64) << 10,
                producer: Some(step + j),
                consumers: vec![step + 4 + j],
                is_graph_output: false,
                is_constant: false,
            });
        }
        for j in 0..4 {
            usages.push(TensorUsage {
                id: base + 4 + j,
                size_bytes: 16 << 10,
                producer: Some(step + 4 + j),
                consumers: vec![step + 8],
                is_graph_output: false,
                is_constant: false,
            });
        }
        usages.push(TensorUsage {
            id: base + 8,
            size_bytes: 64 << 10,
            producer: Some(step + 8),
            consumers: Vec::new(),
            is_graph_output: false,
            is_constant: false,
        });
        input = base + 8;
        step += 9;
    }
    usages[input].is_graph_output = true;
    (step, usages)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A residual-network-like graph: one tensor per step, each read by the next step and, every
/// few steps, by a skip connection a few steps later; sizes from a fixed-seed generator.
fn synthetic(n: usize) -> (usize, Vec<TensorUsage>) {
    let mut seed = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let steps = n - 1;
    let mut usages: Vec<TensorUsage> = (0..n)
        .map(|i| TensorUsage {
            id: i,
            size_bytes: 4096 * (1 + next() % 256),
            producer: i.checked_sub(1),
            consumers: if i + 1 < n { vec![i] } else { vec![] },
            is_graph_output: i + 1 == n,
            is_constant: false,
        })
        .collect();
    for (i, u) in usages.iter_mut().enumerate() {
        let skip = 2 + (next() % 6) as usize;
        if i % 3 == 0 && i + skip < steps {
            u.consumers.push(i + skip);
        }
    }
    (steps, usages)
}
