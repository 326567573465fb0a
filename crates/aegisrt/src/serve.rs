//! `aegisrt serve-sim`: several models with arrival rates, priorities and deadlines, run for
//! real through the runtime's scheduler, then a per-model table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aegis_context::{
    parse_bytes, BudgetLimits, ContextError, InferenceHandle, PolicyKind, Runtime,
};
use aegis_exec::{ExecutionGraph, HostTensor};
use aegis_sched::{Priority, RequestError};
use serde::Deserialize;

use crate::common::{default_threads, device, inputs_for, load_options, percentile, Rng};
use crate::trace::{DeviceSpan, TraceSession};
use crate::{BackendArg, CliResult};

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// "host" (default) or "cuda".
    #[serde(default)]
    backend: Option<String>,
    /// Kernel threads (default: all cores).
    #[serde(default)]
    threads: Option<usize>,
    /// Scheduler streams (default 2).
    #[serde(default = "two")]
    streams: usize,
    /// "fifo", "priority" or "edf" (default "edf").
    #[serde(default = "edf")]
    policy: String,
    /// Arrivals stop after this many seconds...
    #[serde(default)]
    duration_s: Option<f64>,
    /// ...or after this many requests per model (whichever comes first).
    #[serde(default)]
    requests_per_model: Option<usize>,
    /// Seed of the arrival process and generated inputs.
    #[serde(default)]
    seed: u64,
    /// The models.
    models: Vec<ScenarioModel>,
}

fn two() -> usize {
    2
}

fn edf() -> String {
    "edf".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioModel {
    /// Display name (also the model id).
    name: String,
    /// ONNX file, relative to the scenario file.
    path: PathBuf,
    /// Shape overrides, NAME=DIMS.
    #[serde(default)]
    shapes: Vec<String>,
    /// Memory budget, e.g. "64MiB" (default: the device's memory).
    #[serde(default)]
    budget: Option<String>,
    /// Mean arrival rate (Poisson), requests per second.
    rate_hz: f64,
    /// Priority 0..=255 (higher is more urgent; default 4).
    #[serde(default = "normal")]
    priority: u8,
    /// Relative deadline per request, milliseconds.
    #[serde(default)]
    deadline_ms: Option<f64>,
}

fn normal() -> u8 {
    Priority::NORMAL.0
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Row {
    model: String,
    submitted: u64,
    completed: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    with_deadline: u64,
    deadline_met: u64,
    deadline_met_pct: Option<f64>,
    rejected: u64,
    refused: u64,
    cancelled: u64,
    failed: u64,
    lost: u64,
}

struct Pending {
    model: usize,
    submitted: Instant,
    deadline: Option<Instant>,
    handle: InferenceHandle,
}

/// `aegisrt serve-sim`: exit 0, or 3 when a request was lost.
pub fn serve_sim(
    path: &Path,
    backend_override: Option<BackendArg>,
    trace: Option<&Path>,
    json: bool,
) -> CliResult<u8> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
    let sc: Scenario =
        serde_json::from_str(&text).map_err(|e| format!("scenario {}: {e}", path.display()))?;
    if sc.models.is_empty() {
        return Err(format!("scenario {}: no models", path.display()));
    }
    if sc.duration_s.is_none() && sc.requests_per_model.is_none() {
        return Err(format!(
            "scenario {}: give `duration_s` or `requests_per_model` (the run must be bounded)",
            path.display()
        ));
    }
    let duration = Duration::from_secs_f64(sc.duration_s.unwrap_or(3600.0).clamp(0.0, 3600.0));
    let cap = sc.requests_per_model.unwrap_or(usize::MAX);
    let policy = PolicyKind::parse(&sc.policy).ok_or_else(|| {
        format!(
            "scenario: unknown policy `{}` (fifo, priority, edf)",
            sc.policy
        )
    })?;
    let backend = match (backend_override, sc.backend.as_deref()) {
        (Some(b), _) => b,
        (None, None | Some("host")) => BackendArg::Host,
        (None, Some("cuda")) => BackendArg::Cuda,
        (None, Some(other)) => return Err(format!("scenario: unknown backend `{other}`")),
    };
    let session = trace.map(TraceSession::start).transpose()?;
    // Host spans: the whole run, each model's load, the arrivals, the collection.
    let whole = tracing::info_span!(target: "aegisrt", "aegisrt.serve-sim", scenario = %path.display(), policy = %sc.policy, streams = sc.streams).entered();
    let threads = sc.threads.unwrap_or_else(default_threads);
    let dev = device(backend, threads)?;
    let capacity = dev.info().total_memory;
    let rt = Runtime::builder()
        .device(dev)
        .streams(sc.streams)
        .policy(policy)
        .threads(threads)
        .queue_capacity(4096)
        .build()
        .map_err(|e| e.to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut handles = Vec::new();
    let mut inputs: Vec<Vec<HostTensor>> = Vec::new();
    for (i, m) in sc.models.iter().enumerate() {
        if !(m.rate_hz > 0.0 && m.rate_hz.is_finite()) {
            return Err(format!("scenario: model {}: rate_hz must be > 0", m.name));
        }
        let file = base.join(&m.path);
        if !file.exists() {
            return Err(format!(
                "scenario: model {}: file {} does not exist",
                m.name,
                file.display()
            ));
        }
        let _load =
            tracing::info_span!(target: "aegisrt", "aegisrt.load", model = %m.name).entered();
        let opts = load_options(&m.shapes)?;
        let graph = ExecutionGraph::load(&file, &opts).map_err(|e| e.to_string())?;
        let budget = match &m.budget {
            Some(b) => parse_bytes(b).map_err(|e| format!("model {}: budget {e}", m.name))?,
            None => capacity,
        };
        let (x, _) = inputs_for(&graph, &[], sc.seed.wrapping_add(i as u64))?;
        inputs.push(x);
        let h = rt
            .load_as(
                &m.name,
                std::sync::Arc::new(graph),
                BudgetLimits::new(budget, 1),
            )
            .map_err(|e| e.to_string())?;
        handles.push(h);
    }
    if !json {
        println!(
            "serve-sim: {} model(s), policy {}, {} stream(s) on {}, arrivals for {:.1} s{}",
            sc.models.len(),
            sc.policy,
            sc.streams,
            rt.device_info().name,
            duration.as_secs_f64(),
            sc.requests_per_model
                .map(|n| format!(" or {n} requests per model"))
                .unwrap_or_default()
        );
    }

    // Open-loop Poisson arrivals, one seeded stream per model.
    let mut rng: Vec<Rng> = (0..sc.models.len())
        .map(|i| Rng::new(sc.seed.wrapping_mul(31).wrapping_add(i as u64 + 1)))
        .collect();
    let start = Instant::now();
    let exp = |r: &mut Rng, rate: f64| Duration::from_secs_f64(-(1.0 - r.unit()).ln() / rate);
    let mut next: Vec<Duration> = sc
        .models
        .iter()
        .zip(rng.iter_mut())
        .map(|(m, r)| exp(r, m.rate_hz))
        .collect();
    let mut sent = vec![0usize; sc.models.len()];
    let mut rows: Vec<Row> = sc
        .models
        .iter()
        .map(|m| Row {
            model: m.name.clone(),
            ..Row::default()
        })
        .collect();
    let mut pending: Vec<Pending> = Vec::new();
    let bar = progress(json, duration);
    let arrivals = tracing::info_span!(target: "aegisrt", "aegisrt.arrivals").entered();
    let mut last_tick = Instant::now();
    while let Some((i, at)) = next
        .iter()
        .enumerate()
        .filter(|(i, _)| sent[*i] < cap)
        .map(|(i, t)| (i, *t))
        .min_by_key(|(_, t)| *t)
    {
        if at >= duration {
            break;
        }
        let now = start.elapsed();
        if at > now {
            std::thread::sleep(at - now);
        }
        let m = &sc.models[i];
        let submitted = Instant::now();
        let deadline = m
            .deadline_ms
            .map(|d| submitted + Duration::from_secs_f64(d / 1e3));
        let row = &mut rows[i];
        row.submitted += 1;
        match rt.submit(
            &handles[i],
            inputs[i].clone(),
            Priority(m.priority),
            deadline,
        ) {
            Ok(handle) => pending.push(Pending {
                model: i,
                submitted,
                deadline,
                handle,
            }),
            Err(e) => {
                tracing::warn!(target: "aegisrt", model = %m.name, error = %e, "submission refused");
                row.refused += 1;
                if deadline.is_some() {
                    row.with_deadline += 1;
                }
            }
        }
        sent[i] += 1;
        next[i] = at + exp(&mut rng[i], m.rate_hz);
        if last_tick.elapsed() >= Duration::from_millis(if bar.is_some() { 250 } else { 1000 }) {
            last_tick = Instant::now();
            let done = pending.iter().filter(|p| p.handle.is_done()).count();
            tick(&bar, json, start.elapsed(), duration, pending.len(), done);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let arrivals_done = start.elapsed();
    drop(arrivals);
    let collect = tracing::info_span!(target: "aegisrt", "aegisrt.collect").entered();

    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); sc.models.len()];
    let mut spans = Vec::new();
    for p in pending {
        let row = &mut rows[p.model];
        if p.deadline.is_some() {
            row.with_deadline += 1;
        }
        match p.handle.wait_timeout(Duration::from_secs(120)) {
            Err(_) => row.lost += 1,
            Ok(Ok(c)) => {
                row.completed += 1;
                latencies[p.model].push(c.finished_at.saturating_duration_since(p.submitted));
                if p.deadline.is_some() && c.met_deadline() {
                    row.deadline_met += 1;
                }
                let s = p.submitted + c.queued_for;
                spans.push(DeviceSpan {
                    stream: c.stream,
                    model: row.model.clone(),
                    request: c.id.0,
                    start: s,
                    end: s + c.device_time,
                });
            }
            Ok(Err(ContextError::Request { source, .. })) => match *source {
                RequestError::Rejected { .. } => row.rejected += 1,
                RequestError::Cancelled { .. } => row.cancelled += 1,
                _ => row.failed += 1,
            },
            Ok(Err(_)) => row.failed += 1,
        }
    }
    let total = start.elapsed();
    for (row, lat) in rows.iter_mut().zip(latencies.iter_mut()) {
        lat.sort();
        row.p50_ms = percentile(lat, 0.5).as_secs_f64() * 1e3;
        row.p99_ms = percentile(lat, 0.99).as_secs_f64() * 1e3;
        row.max_ms = lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3;
        row.deadline_met_pct = (row.with_deadline > 0)
            .then(|| 100.0 * row.deadline_met as f64 / row.with_deadline as f64);
    }
    drop(collect);
    let decisions = rt.decisions();
    let stats = rt.shutdown();
    // Close the host span before the trace is flushed.
    drop(whole);
    let lost: u64 = rows.iter().map(|r| r.lost).sum::<u64>() + stats.outstanding();
    if json {
        let out = serde_json::json!({
            "policy": sc.policy,
            "streams": sc.streams,
            "arrivals_s": arrivals_done.as_secs_f64(),
            "total_s": total.as_secs_f64(),
            "models": rows,
            "lost": lost,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        print_table(&rows);
        println!(
            "arrivals {:.2} s, all outcomes after {:.2} s; scheduler: {} accepted, {} completed, {} failed, {} rejected, {} cancelled; lost {}",
            arrivals_done.as_secs_f64(),
            total.as_secs_f64(),
            stats.accepted,
            stats.completed,
            stats.failed,
            stats.rejected,
            stats.cancelled,
            lost
        );
    }
    if let Some(s) = session {
        s.finish(&decisions, &spans, sc.streams)?;
        if let (Some(p), false) = (trace, json) {
            println!("trace written to {}", p.display());
        }
    }
    Ok(if lost == 0 { 0 } else { 3 })
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>9} {:>7} {:>5}",
        "model",
        "submitted",
        "completed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "deadline",
        "rejected",
        "refused",
        "cancelled",
        "failed",
        "lost"
    );
    for r in rows {
        println!(
            "{:<16} {:>9} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>10} {:>8} {:>8} {:>9} {:>7} {:>5}",
            r.model,
            r.submitted,
            r.completed,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.deadline_met_pct
                .map(|p| format!("{p:.1}%"))
                .unwrap_or_else(|| "-".into()),
            r.rejected,
            r.refused,
            r.cancelled,
            r.failed,
            r.lost
        );
    }
}

fn progress(json: bool, duration: Duration) -> Option<indicatif::ProgressBar> {
    if json || !crate::common::stderr_is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(duration.as_millis().min(3_600_000) as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40.green/white} {elapsed} / arrivals {msg}")
    {
        b.set_style(style);
    }
    Some(b)
}

fn tick(
    bar: &Option<indicatif::ProgressBar>,
    json: bool,
    elapsed: Duration,
    duration: Duration,
    submitted: usize,
    done: usize,
) {
    match bar {
        Some(b) => {
            b.set_position(elapsed.as_millis().min(duration.as_millis()) as u64);
            b.set_message(format!("{submitted} accepted, {done} done"));
        }
        None if !json => eprintln!(
            "  t={:.1} s: {submitted} accepted, {done} done",
            elapsed.as_secs_f64()
        ),
        None => {}
    }
}
