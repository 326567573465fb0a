//! CUDA path latency: per shared model, eager launches vs one replayed CUDA graph, and the
//! host-side cost of enqueueing one launch (per-node launch overhead). Needs a GPU (feature
//! `cuda`); built by `cargo xtask gpu-build` into `.gpu-bin/cuda_bench`.
//!
//! ```sh
//! cuda_bench [MODEL_DIR...]    # default: every folder of $AEGIS_MODELS_DIR (../shared/models)
//! ```
//! `AEGIS_BENCH_ITERS` sets the timed inferences per mode (default 50); `AEGIS_BENCH_TOP` how
//! many of the slowest nodes each model lists (default 3).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_cuda::{Device, Stream, StreamPriority};
use aegis_exec::cuda::{CudaExecutor, CudaPreparedModel, LaunchMode};
use aegis_exec::{ExecOptions, ExecutionGraph, HostTensor, LoadOptions};
use aegis_memory::DeviceMemoryPool;

fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AEGIS_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for c in ["../../../shared/models", "../../shared/models"] {
        if manifest.join(c).is_dir() {
            return manifest.join(c);
        }
    }
    PathBuf::from("shared/models")
}

fn load(dir: &Path) -> Result<(Arc<ExecutionGraph>, Vec<HostTensor>), String> {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("meta.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut opts = LoadOptions::default();
    let ins = meta["inputs"].as_array().cloned().unwrap_or_default();
    for i in &ins {
        let shape: Vec<usize> = i["shape"]
            .as_array()
            .map(|a| a.iter().map(|d| d.as_u64().unwrap_or(1) as usize).collect())
            .unwrap_or_default();
        opts = opts.with_input_shape(i["name"].as_str().unwrap_or_default(), shape);
    }
    let file = if dir.join("model_static.onnx").exists() {
        "model_static.onnx"
    } else {
        "model.onnx"
    };
    let graph = ExecutionGraph::load(dir.join(file), &opts).map_err(|e| e.to_string())?;
    let inputs = (0..ins.len())
        .map(|k| HostTensor::read_npy(&dir.join(format!("input_{k}.npy"))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(graph), inputs))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn bench(device: &Device, dir: &Path, iters: usize) -> Result<String, String> {
    let (graph, inputs) = load(dir)?;
    let pool = DeviceMemoryPool::new(device, device.memory_free() / 2);
    let t = Instant::now();
    let model = CudaPreparedModel::prepare(graph, &pool, &ExecOptions::default())
        .map_err(|e| e.to_string())?;
    let prepare = t.elapsed();
    let s = Stream::new(device, StreamPriority::NORMAL).map_err(|e| e.to_string())?;
    let mut row = Vec::new();
    let mut enqueue_eager = Duration::ZERO;
    for mode in [LaunchMode::Eager, LaunchMode::Graph] {
        for _ in 0..3 {
            CudaExecutor::run(&model, &inputs, &[&s], mode).map_err(|e| e.to_string())?;
        }
        let mut lat = Vec::with_capacity(iters);
        let mut enq = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t0 = Instant::now();
            let pending =
                CudaExecutor::enqueue(&model, &inputs, &[&s], mode).map_err(|e| e.to_string())?;
            enq.push(t0.elapsed());
            pending.collect().map_err(|e| e.to_string())?;
            lat.push(t0.elapsed());
        }
        if mode == LaunchMode::Eager {
            enqueue_eager = median(enq.clone());
        }
        row.push((median(lat), median(enq)));
    }
    let per_launch = enqueue_eager.as_secs_f64() * 1e6 / model.launch_count().max(1) as f64;
    let profile = gpu_profile(&model, &inputs, &s)?;
    Ok(format!(
        "{:<28} {:>6} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>9.2} {:>8.3}s {}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        model.launch_count(),
        row[0].0.as_secs_f64() * 1e3,
        row[1].0.as_secs_f64() * 1e3,
        row[0].1.as_secs_f64() * 1e3,
        row[1].1.as_secs_f64() * 1e3,
        per_launch,
        prepare.as_secs_f64(),
        if model.graph_ready() {
            ""
        } else {
            "(graph capture failed: replay ran eager)"
        },
    ) + &profile)
}

/// Where the GPU time goes: node medians (event pairs, 10 runs on one stream) summed per op
/// type, and the slowest nodes.
fn gpu_profile(
    model: &CudaPreparedModel,
    inputs: &[HostTensor],
    s: &Stream,
) -> Result<String, String> {
    let mut nodes = CudaExecutor::profile(model, inputs, s, 10).map_err(|e| e.to_string())?;
    let total: f64 = nodes.iter().map(|n| n.median.as_secs_f64()).sum();
    let mut by_op: Vec<(&str, f64)> = Vec::new();
    for n in &nodes {
        match by_op.iter_mut().find(|(op, _)| *op == n.op) {
            Some((_, t)) => *t += n.median.as_secs_f64(),
            None => by_op.push((n.op, n.median.as_secs_f64())),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let ops: Vec<String> = by_op
        .iter()
        .take(5)
        .map(|(op, t)| {
            format!(
                "{op} {:.3} ms ({:.0}%)",
                t * 1e3,
                100.0 * t / total.max(1e-12)
            )
        })
        .collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.median));
    // AEGIS_BENCH_TOP=N lists the N slowest nodes (default 3).
    let top = std::env::var("AEGIS_BENCH_TOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let slow: Vec<String> = nodes
        .iter()
        .take(top)
        .map(|n| {
            format!(
                "{} {} {:.3} ms",
                n.op,
                n.shapes(),
                n.median.as_secs_f64() * 1e3
            )
        })
        .collect();
    Ok(format!(
        "\n    gpu node time {:.3} ms: {}\n    slowest: {}",
        total * 1e3,
        ops.join(", "),
        slow.join("; ")
    ))
}

fn main() {
    let device = match Device::cuda(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cuda_bench needs a CUDA GPU: {e}");
            std::process::exit(2);
        }
    };
    let iters: usize = std::env::var("AEGIS_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut dirs: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        let root = models_dir();
        dirs = std::fs::read_dir(&root)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("meta.json").is_file())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
    }
    println!(
        "device: {:?}; {iters} timed inferences per mode, medians",
        device.info()
    );
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "model", "launch", "eager ms", "replay ms", "enq-e ms", "enq-r ms", "us/launch", "prepare"
    );
    let mut failed = false;
    for d in &dirs {
        match bench(&device, d, iters) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                println!("{}: {e}", d.display());
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
