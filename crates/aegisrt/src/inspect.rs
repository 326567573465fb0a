//! `aegisrt plan`, `check` and `fit`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aegis_context::{
    fit_check, fmt_bytes, parse_bytes, requirement_for, Backend, BudgetLimits, ExecutionContext,
    FitModel,
};
use aegis_cuda::{Device, HostDeviceOptions};
use aegis_exec::{ExecOptions, ExecutionGraph, LoadOptions};

use crate::common::{default_threads, inputs_for, load_graph, load_options};
use crate::{CliResult, ModelArgs};

#[derive(Debug, serde::Serialize)]
struct PlanTensor {
    tensor: usize,
    name: String,
    size_bytes: u64,
    offset: u64,
    first_step: usize,
    last_step: usize,
}

#[derive(Debug, serde::Serialize)]
struct PlanReport {
    model: String,
    tensors: usize,
    steps: usize,
    strategy: String,
    naive_bytes: u64,
    peak_bytes: u64,
    lower_bound_bytes: u64,
    peak_to_bound: f64,
    saving_vs_naive: f64,
    placements: Vec<PlanTensor>,
}

/// `aegisrt plan`.
pub fn plan(model: &ModelArgs, svg: Option<&Path>, json: bool) -> CliResult<u8> {
    let graph = load_graph(model)?;
    let p = graph.plan();
    let id = aegis_context::model_id_for_path(&model.model);
    let report = PlanReport {
        model: id.clone(),
        tensors: p.tensors.len(),
        steps: graph.topological_order().len(),
        strategy: p.strategy.clone(),
        naive_bytes: p.naive_bytes,
        peak_bytes: p.peak_bytes,
        lower_bound_bytes: p.lower_bound_bytes,
        peak_to_bound: p.ratio_to_bound(),
        saving_vs_naive: if p.naive_bytes == 0 {
            0.0
        } else {
            1.0 - p.peak_bytes as f64 / p.naive_bytes as f64
        },
        placements: p
            .tensors
            .iter()
            .filter_map(|l| {
                Some(PlanTensor {
                    tensor: l.tensor,
                    name: graph.tensors().get(l.tensor)?.name.clone(),
                    size_bytes: l.size_bytes,
                    offset: p.offset_of(l.tensor)?,
                    first_step: l.first_step,
                    last_step: l.last_step,
                })
            })
            .collect(),
    };
    if let Some(path) = svg {
        std::fs::write(path, crate::svg::plan_svg(&graph, &id))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{}: {} planned tensors over {} steps (strategy {})",
            id, report.tensors, report.steps, report.strategy
        );
        println!(
            "  naive sum    {:>14}  ({} B)",
            fmt_bytes(p.naive_bytes),
            p.naive_bytes
        );
        println!(
            "  peak         {:>14}  ({} B)",
            fmt_bytes(p.peak_bytes),
            p.peak_bytes
        );
        println!(
            "  lower bound  {:>14}  ({} B)",
            fmt_bytes(p.lower_bound_bytes),
            p.lower_bound_bytes
        );
        println!(
            "  peak / bound {:.3}; peak saves {:.1}% of the naive sum",
            report.peak_to_bound,
            report.saving_vs_naive * 100.0
        );
        if let Some(path) = svg {
            println!("  picture written to {}", path.display());
        }
    }
    Ok(0)
}

/// `aegisrt check`: exit 0 when the model can run, 3 when it cannot.
pub fn check(model: &ModelArgs, threads: Option<usize>) -> CliResult<u8> {
    if !model.model.exists() {
        return Err(format!(
            "model file {} does not exist",
            model.model.display()
        ));
    }
    let opts = load_options(&model.shapes)?;
    let id = aegis_context::model_id_for_path(&model.model);
    let graph = match ExecutionGraph::load(&model.model, &opts) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            println!("{id}: cannot be loaded");
            println!("  {}", crate::common::cli_message(&e));
            println!("verdict: NOT RUNNABLE");
            return Ok(3);
        }
    };
    println!(
        "{id}: loaded ({} operators, opset {})",
        graph.operators().len(),
        graph.opset()
    );
    for &t in graph.inputs() {
        let i = graph.tensor(t);
        println!("  input  {}: {} {:?}", i.name, i.dtype, i.shape);
    }
    for &t in graph.outputs() {
        let i = graph.tensor(t);
        println!("  output {}: {} {:?}", i.name, i.dtype, i.shape);
    }
    let hist: Vec<String> = graph
        .op_histogram()
        .iter()
        .map(|(op, n)| format!("{op}×{n}"))
        .collect();
    println!("  operators: {}", hist.join(" "));
    let p = graph.plan();
    println!(
        "  plan: peak {} (lower bound {}, naive {})",
        fmt_bytes(p.peak_bytes),
        fmt_bytes(p.lower_bound_bytes),
        fmt_bytes(p.naive_bytes)
    );
    let threads = threads.unwrap_or_else(default_threads);
    let exec = ExecOptions {
        streams: 1,
        threads,
    };
    let req = match requirement_for(&graph, &exec) {
        Ok(r) => r,
        Err(e) => {
            println!("  kernels: {e}");
            println!("verdict: NOT RUNNABLE");
            return Ok(3);
        }
    };
    println!(
        "  device memory: weights {} + arena {} + workspace {} = {}",
        fmt_bytes(req.weights_bytes + req.prepared_weights_bytes),
        fmt_bytes(req.arena_bytes),
        fmt_bytes(req.workspace_bytes),
        fmt_bytes(req.total())
    );
    // A trial inference on generated inputs: the only proof that every kernel exists.
    let device = Device::host_with(HostDeviceOptions {
        threads,
        ..HostDeviceOptions::default()
    });
    let capacity = device.info().total_memory;
    let backend = Backend::new(device, exec);
    backend
        .register(&id, Arc::clone(&graph))
        .map_err(|e| e.to_string())?;
    let trial =
        ExecutionContext::create(&id, BudgetLimits::new(capacity, 1), &backend).and_then(|ctx| {
            let (inputs, _) = inputs_for(&graph, &[], 0).map_err(|m| {
                aegis_context::ContextError::InvalidConfig {
                    field: "inputs",
                    value: m,
                    reason: "generated inputs",
                }
            })?;
            let t = Instant::now();
            ctx.execute(&inputs).map(|_| t.elapsed())
        });
    match trial {
        Ok(took) => {
            println!(
                "  trial inference on the host backend: ok ({:.3} ms)",
                took.as_secs_f64() * 1e3
            );
            println!("verdict: RUNNABLE");
            Ok(0)
        }
        Err(e) => {
            println!("  trial inference on the host backend failed: {e}");
            println!("verdict: NOT RUNNABLE");
            Ok(3)
        }
    }
}

/// Splits `MODEL[:BUDGET]` (a suffix that parses as a size is the budget).
fn split_spec(spec: &str) -> CliResult<(PathBuf, Option<u64>)> {
    if let Some((path, budget)) = spec.rsplit_once(':') {
        if let Ok(b) = parse_bytes(budget) {
            return Ok((PathBuf::from(path), Some(b)));
        }
        if !Path::new(spec).exists() {
            return Err(format!(
                "`{spec}`: budget `{budget}` is not a size (e.g. 64MiB)"
            ));
        }
    }
    Ok((PathBuf::from(spec), None))
}

/// `aegisrt fit`: exit 0 when the set fits, 3 when it does not.
pub fn fit(device_memory: &str, concurrency: usize, json: bool, specs: &[String]) -> CliResult<u8> {
    let device_memory = parse_bytes(device_memory).map_err(|e| format!("--device-memory {e}"))?;
    let mut models = Vec::new();
    for spec in specs {
        let (path, budget) = split_spec(spec)?;
        if !path.exists() {
            return Err(format!("model file {} does not exist", path.display()));
        }
        let graph = ExecutionGraph::load(&path, &LoadOptions::default()).map_err(|e| match e {
            // `fit` takes many models and no --shape: point at a fixed-shape file.
            aegis_exec::ExecError::OpenDimension {
                model, input, dim, ..
            } => format!(
                "model {model}: input '{input}' has open dimension {dim}; `fit` needs fixed shapes (e.g. the model's model_static.onnx)"
            ),
            e => e.to_string(),
        })?;
        let mut id = aegis_context::model_id_for_path(&path);
        if models.iter().any(|m: &FitModel| m.model == id) {
            id = format!("{id}#{}", models.len() + 1);
        }
        models.push(FitModel {
            model: id,
            graph: Arc::new(graph),
            limits: budget.map(|b| BudgetLimits::new(b, 1)),
        });
    }
    let exec = ExecOptions {
        streams: 1,
        threads: default_threads(),
    };
    let report =
        fit_check(device_memory, &models, &exec, concurrency).map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!("{report}");
    }
    Ok(if report.fits { 0 } else { 3 })
}
