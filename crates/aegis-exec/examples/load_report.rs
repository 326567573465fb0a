//! Loads every shared model and prints node/tensor counts, the op histogram, the memory
//! plan's peak against its lower bound, and the load time.
//!
//! `cargo run --release -p aegis-exec --example load_report [models_dir]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use aegis_exec::{ExecutionGraph, LoadOptions, TensorKind};

fn models_dir() -> PathBuf {
    std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models"))
}

/// Overrides for models with dynamic dimensions (see each meta.json).
fn options_for(name: &str) -> LoadOptions {
    let opts = LoadOptions::default();
    if name == "ppocr-mobile-v2-cls" {
        opts.with_input_shape("x", vec![1, 3, 48, 192])
    } else {
        opts
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let dir = models_dir();
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("model.onnx").is_file())
            .collect(),
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    entries.sort();
    println!(
        "| model | opset | nodes | tensors | constants (MiB) | peak, file order (MiB) | plan peak (MiB) | lower bound (MiB) | naive (MiB) | peak/bound | load (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut histos = Vec::new();
    let mut failed = false;
    for d in &entries {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let opts = options_for(&name);
        let t0 = Instant::now();
        let g = match ExecutionGraph::load(d.join("model.onnx"), &opts) {
            Ok(g) => g,
            Err(e) => {
                println!("| {name} | load failed: {e} |");
                failed = true;
                continue;
            }
        };
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let plan = g.plan();
        // The same model without the memory-aware reordering, for comparison.
        let file_order_peak = ExecutionGraph::load(
            d.join("model.onnx"),
            &LoadOptions {
                memory_aware_order: false,
                ..opts.clone()
            },
        )
        .map(|g| format!("{:.2}", mib(g.plan().peak_bytes)))
        .unwrap_or_else(|e| e.to_string());
        let consts = g
            .tensors()
            .iter()
            .filter(|t| t.kind == TensorKind::Constant)
            .count();
        println!(
            "| {name} | {} | {} | {} ({consts} const) | {:.1} | {file_order_peak} | {:.2} | {:.2} | {:.2} | {:.3} | {ms:.1} |",
            g.opset(),
            g.operators().len(),
            g.tensors().len(),
            mib(g.constant_bytes()),
            mib(plan.peak_bytes),
            mib(plan.lower_bound_bytes),
            mib(plan.naive_bytes),
            plan.ratio_to_bound(),
        );
        histos.push((name, g.op_histogram()));
    }
    println!();
    for (name, h) in histos {
        let s: Vec<String> = h.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!("{name}: {}", s.join(" "));
    }
    if failed {
        std::process::exit(1);
    }
}
