//! `cargo xtask bench exec`: each shared model on the host backend, and tract on the same
//! model and input in the same process, side by side (medians, ratios), plus onnxruntime's
//! medians from ../shared/bench/baselines.md (measured on this machine kind by
//! ../shared/bench/ort_bench.py; re-run it beside this for a same-run comparison).
//!
//! Usage: exec_bench [MODEL...] [--iters N] [--rss] [--threads N] [--no-tract] [--ops]
//! (`--help` prints it; an unknown option is an error). MODEL is a folder name under
//! ../shared/models or a path to a model folder; a folder without meta.json gets a row
//! saying so.
//! With `--rss` and exactly one model, also prints this process's peak RSS (VmHWM).
//! `--threads N` times aegis at N threads only (the 2T column then shows N threads);
//! `--no-tract` skips tract (profiling runs).
//! The last column is CPU time per run over all of the process's threads (from
//! /proc/self/task/*/schedstat): unlike wall time it barely moves when other processes share
//! the machine, so it is the figure to compare 1-thread changes by on a busy machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::{ExecOptions, ExecutionGraph, Executor, HostTensor, LoadOptions, PreparedModel};
use aegis_memory::DeviceMemoryPool;
use tract_onnx::prelude::*;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// CPU time this process's threads have run (ns), from /proc/self/task/*/schedstat: robust
/// to other processes on the machine, unlike wall time.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| {
                    let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
                    s.split_whitespace().next()?.parse::<u64>().ok()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Median wall ms per call, and mean CPU ms per call (all threads).
fn time(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..2 {
        f();
    }
    let cpu0 = cpu_ns();
    let mut v = Vec::new();
    let start = Instant::now();
    while v.len() < iters || (v.len() < 3 * iters && start.elapsed() < Duration::from_millis(1500))
    {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
        if start.elapsed() > Duration::from_secs(20) && v.len() >= 3 {
            break;
        }
    }
    let cpu = (cpu_ns() - cpu0) as f64 / 1e6 / v.len() as f64;
    (median(v), cpu)
}

fn ort_baselines() -> Vec<(String, f64, f64)> {
    let text = std::fs::read_to_string(shared().join("bench/baselines.md")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            if c.len() < 5 {
                return None;
            }
            Some((c[1].to_owned(), c[2].parse().ok()?, c[3].parse().ok()?))
        })
        .collect()
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Kernel time per op label, largest first, then the ten slowest nodes.
fn print_profile(model: &str, threads: usize, times: &[aegis_exec::NodeTime]) {
    let total: f64 = times.iter().map(|t| t.median.as_secs_f64() * 1e3).sum();
    let mut by_op: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for t in times {
        let e = by_op.entry(t.op).or_default();
        e.0 += t.median.as_secs_f64() * 1e3;
        e.1 += 1;
    }
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("\n{model}, {threads} thread(s): sum of kernel medians {total:.3} ms");
    println!("| op | nodes | ms | share |\n|---|---|---|---|");
    for (op, (ms, n)) in rows {
        println!(
            "| {op} | {n} | {ms:.3} | {:.1} % |",
            100.0 * ms / total.max(1e-9)
        );
    }
    let mut slow: Vec<_> = times.iter().collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.median));
    println!("slowest nodes:");
    for t in slow.iter().take(
        std::env::var("EB_SLOWEST")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    ) {
        println!(
            "  {:>8.3} ms  {} ({}: {})",
            t.median.as_secs_f64() * 1e3,
            t.node,
            t.op,
            t.shapes()
        );
    }
}

const USAGE: &str =
    "Usage: exec_bench [MODEL...] [--iters N] [--rss] [--threads N] [--no-tract] [--ops]
MODEL: a folder name under ../shared/models, or a path to a model folder (with meta.json);
none: every shared model.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    const FLAGS: [&str; 6] = [
        "--iters",
        "--rss",
        "--no-tract",
        "--ops",
        "--threads",
        "--help",
    ];
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with('-') && !FLAGS.contains(&a.as_str()))
    {
        eprintln!("exec_bench: unknown option {bad}\n{USAGE}");
        std::process::exit(2);
    }
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(10);
    let rss = args.iter().any(|a| a == "--rss");
    let no_tract = args.iter().any(|a| a == "--no-tract");
    // Per-op-type kernel times instead of the table (where a model's time goes).
    let ops = args.iter().any(|a| a == "--ops");
    let only_threads: Option<usize> = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    let mut names: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--")
                && (*i == 0 || (args[i - 1] != "--iters" && args[i - 1] != "--threads"))
        })
        .map(|(_, a)| a.clone())
        .collect();
    if names.is_empty() {
        let mut all: Vec<String> = std::fs::read_dir(shared().join("models"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("meta.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        all.sort();
        names = all;
    }
    let ort = ort_baselines();
    println!("| model | aegis 1T (ms) | aegis 2T (ms) | tract 1T (ms) | aegis/tract 1T | ORT 1T / 2T (ms, baselines.md) | aegis/ORT 1T | aegis/ORT 2T | aegis CPU ms/run 1T / 2T |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for arg in &names {
        // A path to a model folder, or a folder name under ../shared/models.
        let given = std::path::Path::new(arg);
        let dir = if given.join("meta.json").exists() {
            given.to_path_buf()
        } else {
            shared().join("models").join(arg)
        };
        let name = dir
            .file_name()
            .map_or_else(|| arg.clone(), |n| n.to_string_lossy().into_owned());
        let name = &name;
        let meta: serde_json::Value = match std::fs::read_to_string(dir.join("meta.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
        {
            Some(m) => m,
            None => {
                println!("| {arg} | no readable meta.json in {} |", dir.display());
                continue;
            }
        };
        let mut opts = LoadOptions::default();
        let mut shapes = Vec::new();
        for i in meta["inputs"].as_array().into_iter().flatten() {
            let shape: Vec<usize> = i["shape"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| d.as_u64().unwrap_or(1) as usize)
                .collect();
            opts = opts.with_input_shape(i["name"].as_str().unwrap_or_default(), shape.clone());
            shapes.push(shape);
        }
        let file = if dir.join("model_static.onnx").exists() {
            "model_static.onnx"
        } else {
            "model.onnx"
        };
        let path = dir.join(file);
        let graph = match ExecutionGraph::load(&path, &opts) {
            Ok(g) => Arc::new(g),
            Err(e) => {
                println!("| {name} | load failed: {e} |");
                continue;
            }
        };
        let inputs: Vec<HostTensor> = (0..shapes.len())
            .map(|k| HostTensor::read_npy(&dir.join(format!("input_{k}.npy"))).expect("input"))
            .collect();
        let device = Device::host();
        let mut ours = Vec::new();
        let mut cpus = Vec::new();
        let thread_counts = match only_threads {
            Some(t) => vec![t, t],
            None => vec![1usize, 2],
        };
        for threads in thread_counts {
            let pool = DeviceMemoryPool::new(&device, 8 << 30);
            let m = match PreparedModel::prepare(
                Arc::clone(&graph),
                &pool,
                &ExecOptions {
                    streams: 1,
                    threads,
                },
            ) {
                Ok(m) => m,
                Err(e) => {
                    println!("| {name} | prepare failed: {e} |");
                    break;
                }
            };
            let s = Stream::new(&device, StreamPriority::NORMAL).expect("stream");
            if let Err(e) = Executor::run(&m, &inputs, &[&s]) {
                println!("| {name} | run failed: {e} |");
                break;
            }
            if ops {
                match Executor::profile(&m, &inputs, &s, iters) {
                    Ok(t) => print_profile(name, threads, &t),
                    Err(e) => println!("{name}: profile failed: {e}"),
                }
                continue;
            }
            let (ms, cpu) = time(iters, || {
                Executor::run(&m, &inputs, &[&s]).expect("run");
            });
            ours.push(ms);
            cpus.push(cpu);
        }
        if ops || ours.len() < 2 {
            continue;
        }
        // tract, single-threaded, on the same file and input.
        let tract_ms = (|| -> TractResult<f64> {
            if no_tract {
                return Ok(f64::NAN);
            }
            let mut model = tract_onnx::onnx().model_for_path(&path)?;
            for (k, s) in shapes.iter().enumerate() {
                model = model.with_input_fact(k, f32::fact(s).into())?;
            }
            let runnable = model.into_optimized()?.into_runnable()?;
            let data = inputs[0]
                .to_f32()
                .map_err(|e| TractError::msg(e.to_string()))?;
            let t = tract_ndarray::ArrayD::from_shape_vec(shapes[0].clone(), data)?;
            let input: TValue = Tensor::from(t).into();
            Ok(time(iters, || {
                runnable.run(tvec!(input.clone())).expect("tract run");
            })
            .0)
        })()
        .unwrap_or(f64::NAN);
        let (o1, o2) = ort
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, a, b)| (*a, *b))
            .unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} | {:.2} | {:.2} / {:.2} |",
            ours[0],
            ours[1],
            tract_ms,
            ours[0] / tract_ms,
            o1,
            o2,
            ours[0] / o1,
            ours[1] / o2,
            cpus[0],
            cpus[1]
        );
    }
    if rss && names.len() == 1 {
        if let Some(k) = vm_hwm_kib() {
            println!("peak RSS (VmHWM): {:.1} MiB", k as f64 / 1024.0);
        }
    }
}
