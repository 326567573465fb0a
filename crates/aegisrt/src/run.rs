//! `aegisrt run`, `aegisrt bench` and `aegisrt profile`.

use std::path::Path;
use std::time::{Duration, Instant};

use aegis_context::{Backend, BudgetLimits, ExecutionContext, Runtime};
use aegis_cuda::{Stream, StreamPriority};
use aegis_exec::{ExecOptions, Executor, PreparedModel};
use aegis_memory::DeviceMemoryPool;
use aegis_sched::Priority;

use crate::common::{
    default_threads, device, file_safe, inputs_for, load_graph, load_graph_for_inputs, ms,
    percentile, stderr_is_terminal, summarize,
};
use crate::trace::{DeviceSpan, TraceSession};
use crate::{CliResult, DeviceArgs, ModelArgs};

/// `aegisrt run`.
pub fn run(
    model: &ModelArgs,
    dev: &DeviceArgs,
    inputs: &[String],
    seed: u64,
    output_dir: Option<&Path>,
    trace: Option<&Path>,
) -> CliResult<u8> {
    let session = trace.map(TraceSession::start).transpose()?;
    let graph = load_graph_for_inputs(model, inputs)?;
    let (tensors, notes) = inputs_for(&graph, inputs, seed)?;
    for n in &notes {
        println!("{n}");
    }
    let threads = dev.threads.unwrap_or_else(default_threads);
    let device = device(dev.backend, threads)?;
    let capacity = device.info().total_memory;
    let rt = Runtime::builder()
        .device(device)
        .streams(1)
        .threads(threads)
        .model_streams(dev.streams)
        .warmup(false)
        .build()
        .map_err(|e| e.to_string())?;
    let id = aegis_context::model_id_for_path(&model.model);
    let handle = rt
        .load_as(
            &id,
            graph.clone(),
            BudgetLimits::new(capacity, dev.streams.max(1)),
        )
        .map_err(|e| e.to_string())?;
    let submitted = Instant::now();
    let done = {
        let _span = tracing::info_span!(target: "aegisrt", "aegisrt.run", model = %id).entered();
        rt.submit(&handle, tensors, Priority::NORMAL, None)
            .and_then(|h| h.wait())
            .map_err(|e| e.to_string())?
    };
    let wall = submitted.elapsed();
    let names: Vec<String> = graph
        .outputs()
        .iter()
        .map(|&t| graph.tensor(t).name.clone())
        .collect();
    println!(
        "model {id}: {} output(s) in {} ms (device {} ms) on {}",
        done.outputs.len(),
        ms(wall),
        ms(done.device_time),
        rt.device_info().name
    );
    for (name, t) in names.iter().zip(&done.outputs) {
        println!("  {name}: {} {:?}  {}", t.dtype, t.shape, summarize(t));
    }
    if let Some(dir) = output_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create output directory {}: {e}", dir.display()))?;
        for (name, t) in names.iter().zip(&done.outputs) {
            let path = dir.join(format!("{}.npy", file_safe(name)));
            t.write_npy(&path).map_err(|e| e.to_string())?;
            println!("  wrote {}", path.display());
        }
    }
    if let Some(s) = session {
        let start = submitted + done.queued_for;
        let span = DeviceSpan {
            stream: done.stream,
            model: id.clone(),
            request: done.id.0,
            start,
            end: start + done.device_time,
        };
        let decisions = rt.decisions();
        rt.shutdown();
        s.finish(&decisions, &[span], 1)?;
        if let Some(p) = trace {
            println!("trace written to {}", p.display());
        }
    }
    Ok(0)
}

/// Latency statistics of a benchmark.
#[derive(Debug, serde::Serialize)]
struct BenchReport {
    model: String,
    backend: String,
    iterations: usize,
    warmup: usize,
    min_ms: f64,
    median_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
    throughput_per_s: f64,
}

/// The model and generated inputs of `bench` and `profile` (the notes on generated inputs
/// printed unless the output is JSON).
fn timed_model(
    model: &ModelArgs,
    iterations: usize,
    json: bool,
) -> CliResult<(
    std::sync::Arc<aegis_exec::ExecutionGraph>,
    Vec<aegis_exec::HostTensor>,
)> {
    if iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    let graph = load_graph(model)?;
    let (tensors, notes) = inputs_for(&graph, &[], 0)?;
    if !json {
        for n in &notes {
            println!("{n}");
        }
    }
    Ok((graph, tensors))
}

/// `aegisrt bench`: synchronous inferences on one context.
pub fn bench(
    model: &ModelArgs,
    dev: &DeviceArgs,
    iterations: usize,
    warmup: usize,
    json: bool,
) -> CliResult<u8> {
    let (graph, tensors) = timed_model(model, iterations, json)?;
    let threads = dev.threads.unwrap_or_else(default_threads);
    let device = device(dev.backend, threads)?;
    let capacity = device.info().total_memory;
    let backend_name = device.info().name;
    let backend = Backend::new(
        device,
        ExecOptions {
            streams: dev.streams.max(1),
            threads,
        },
    );
    let id = aegis_context::model_id_for_path(&model.model);
    backend.register(&id, graph).map_err(|e| e.to_string())?;
    let ctx = ExecutionContext::create(
        &id,
        BudgetLimits::new(capacity, dev.streams.max(1)),
        &backend,
    )
    .map_err(|e| e.to_string())?;
    for _ in 0..warmup {
        ctx.execute(&tensors).map_err(|e| e.to_string())?;
    }
    let bar = if stderr_is_terminal() && !json {
        let b = indicatif::ProgressBar::new(iterations as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos}/{len} iterations  {per_sec}  eta {eta}",
            )
            .map_err(|e| e.to_string())?,
        );
        Some(b)
    } else {
        None
    };
    let step = (iterations / 10).max(1);
    let mut times = Vec::with_capacity(iterations);
    let started = Instant::now();
    for i in 0..iterations {
        let t = Instant::now();
        ctx.execute(&tensors).map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        match &bar {
            Some(b) => b.inc(1),
            None if !json && ((i + 1) % step == 0 || i + 1 == iterations) => {
                eprintln!("  {}/{} iterations", i + 1, iterations);
            }
            None => {}
        }
    }
    let total = started.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    times.sort();
    let f = |d: Duration| d.as_secs_f64() * 1e3;
    let report = BenchReport {
        model: id,
        backend: backend_name,
        iterations,
        warmup,
        min_ms: f(times[0]),
        median_ms: f(percentile(&times, 0.5)),
        p90_ms: f(percentile(&times, 0.9)),
        p99_ms: f(percentile(&times, 0.99)),
        max_ms: f(times[times.len() - 1]),
        mean_ms: f(times.iter().sum::<Duration>()) / iterations as f64,
        throughput_per_s: iterations as f64 / total.as_secs_f64(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{} on {}: {} iterations ({} warm-up)",
            report.model, report.backend, iterations, warmup
        );
        println!(
            "latency ms: min {:.3}  median {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            report.min_ms,
            report.median_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms,
            report.mean_ms
        );
        println!("throughput: {:.1} inferences/s", report.throughput_per_s);
    }
    Ok(0)
}

/// One op type's share of a profile.
#[derive(Debug, serde::Serialize)]
struct OpShare {
    op: &'static str,
    nodes: usize,
    ms: f64,
    share: f64,
}

/// One node of a profile.
#[derive(Debug, serde::Serialize)]
struct NodeRow {
    node: String,
    op: &'static str,
    ms: f64,
    /// `in0, in1 -> out0`, dims joined by `x`.
    shapes: String,
    /// Arithmetic rate (2 FLOPs per multiply-add) for Conv and MatMul nodes.
    gflops: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
struct ProfileReport {
    model: String,
    threads: usize,
    iterations: usize,
    /// Sum of the kernels' medians (the kernels alone; an inference adds stream hand-offs).
    kernels_ms: f64,
    ops: Vec<OpShare>,
    slowest: Vec<NodeRow>,
}

/// `aegisrt profile`: every kernel timed on the host backend.
pub fn profile(
    model: &ModelArgs,
    threads: Option<usize>,
    iterations: usize,
    top: usize,
    json: bool,
) -> CliResult<u8> {
    let (graph, tensors) = timed_model(model, iterations, json)?;
    let threads = threads.unwrap_or_else(default_threads);
    let device = device(crate::BackendArg::Host, threads)?;
    let pool = DeviceMemoryPool::new(&device, device.info().total_memory);
    let opts = ExecOptions {
        streams: 1,
        threads,
    };
    let prepared = PreparedModel::prepare(std::sync::Arc::clone(&graph), &pool, &opts)
        .map_err(|e| e.to_string())?;
    let stream = Stream::new(&device, StreamPriority::NORMAL).map_err(|e| e.to_string())?;
    // One untimed inference first: first-touch page faults are not the kernels' cost.
    Executor::run(&prepared, &tensors, &[&stream]).map_err(|e| e.to_string())?;
    let times =
        Executor::profile(&prepared, &tensors, &stream, iterations).map_err(|e| e.to_string())?;
    let total: f64 = times.iter().map(|t| millis(t.median)).sum();
    let mut by_op: std::collections::BTreeMap<&'static str, (usize, f64)> = Default::default();
    for t in &times {
        let e = by_op.entry(t.op).or_default();
        e.0 += 1;
        e.1 += millis(t.median);
    }
    let mut ops: Vec<OpShare> = by_op
        .into_iter()
        .map(|(op, (nodes, ms))| OpShare {
            op,
            nodes,
            ms,
            share: if total > 0.0 { ms / total } else { 0.0 },
        })
        .collect();
    ops.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.op.cmp(b.op)));
    let mut nodes: Vec<&aegis_exec::NodeTime> = times.iter().collect();
    nodes.sort_by_key(|t| (std::cmp::Reverse(t.median), t.step));
    let report = ProfileReport {
        model: aegis_context::model_id_for_path(&model.model),
        threads,
        iterations,
        kernels_ms: total,
        ops,
        slowest: nodes
            .iter()
            .take(top)
            .map(|t| NodeRow {
                node: t.node.clone(),
                op: t.op,
                ms: millis(t.median),
                shapes: t.shapes(),
                gflops: t
                    .macs()
                    .filter(|_| t.median.as_nanos() > 0)
                    .map(|m| 2.0 * m as f64 / t.median.as_nanos() as f64),
            })
            .collect(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
        return Ok(0);
    }
    println!(
        "{}: {} kernels, {} thread(s), {} profiled inferences; sum of kernel medians {:.3} ms",
        report.model,
        times.len(),
        threads,
        iterations,
        total
    );
    println!("{:<28} {:>6} {:>10} {:>7}", "op", "nodes", "ms", "share");
    for o in &report.ops {
        println!(
            "{:<28} {:>6} {:>10.3} {:>6.1}%",
            o.op,
            o.nodes,
            o.ms,
            100.0 * o.share
        );
    }
    println!("slowest nodes:");
    for n in &report.slowest {
        let rate = n
            .gflops
            .map(|g| format!(", {g:.1} GFLOP/s"))
            .unwrap_or_default();
        println!(
            "  {:>9.3} ms  {} ({}: {}{rate})",
            n.ms, n.node, n.op, n.shapes
        );
    }
    Ok(0)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
