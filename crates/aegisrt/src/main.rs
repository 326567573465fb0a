//! `aegisrt`: the AegisRT command line.
//!
//! Subcommands: `run`, `bench`, `profile`, `plan`, `check`, `fit`, `serve-sim` (see
//! `docs/CLI.md`).
//! Every failure prints one line `error: ...` on stderr and exits non-zero; a panic is caught
//! by a hook that prints one line too (no backtrace).
//!
//! Exit codes: 0 success; 1 error (bad input, failed inference, ...); 2 usage error; 3 a
//! negative answer (`check`: the model cannot run; `fit`: the set does not fit; `serve-sim`:
//! a request was lost).

mod common;
mod inspect;
mod run;
mod serve;
mod svg;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Errors of the command line: one line each.
pub type CliResult<T> = Result<T, String>;

#[derive(Debug, Parser)]
#[command(name = "aegisrt", version, about = "AegisRT: an edge-AI inference runtime", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// Host backend: streams are worker threads, kernels run on the CPU.
    Host,
    /// CUDA device 0 (needs a build with the `cuda` feature).
    Cuda,
}

/// Options shared by the subcommands that load a model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The ONNX model file (or a directory holding `model.onnx`, as the model zoo lays them out).
    #[arg(value_parser = model_path)]
    pub model: PathBuf,
    /// Fix an input's shape: NAME=D0,D1,... (repeatable).
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
}

/// Options shared by the subcommands that run a model.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Device backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Host)]
    pub backend: BackendArg,
    /// Threads one kernel may use (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Streams one model's independent branches may spread over.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one inference and print the outputs.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        device: DeviceArgs,
        /// An input tensor: NAME=FILE (.npy or ONNX TensorProto .pb; repeatable). Inputs not
        /// given are generated (seeded, deterministic).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Seed of generated inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write every output as DIR/NAME.npy.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Write a Chrome/Perfetto trace here.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Measure latency like trtexec: min, median, p90, p99, max, throughput.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        device: DeviceArgs,
        /// Timed iterations.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        /// Untimed iterations first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where the time goes: every kernel timed (host backend), per op type and per node.
    Profile {
        #[command(flatten)]
        model: ModelArgs,
        /// Threads one kernel may use (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Profiled inferences (each node's median is reported).
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Slowest nodes listed.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the memory plan: naive sum, peak, lower bound; optionally draw it as SVG.
    Plan {
        #[command(flatten)]
        model: ModelArgs,
        /// Write the plan as an SVG picture here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a model and tell whether it can run (exit 0) or not (exit 3), and why.
    Check {
        #[command(flatten)]
        model: ModelArgs,
        /// Threads for the trial inference.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Capacity report: does this set of models fit a device? (exit 3 when it does not)
    Fit {
        /// Device memory, e.g. 512MiB, 2GiB, 1000000.
        #[arg(long, value_name = "BYTES")]
        device_memory: String,
        /// Scheduler streams (models running at once; models that never run together can
        /// share one activation arena).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Models, each MODEL or MODEL:BUDGET (e.g. model.onnx:64MiB).
        #[arg(required = true, value_name = "MODEL[:BUDGET]")]
        models: Vec<String>,
    },
    /// Serve a scenario of several models with arrival rates, priorities and deadlines, for
    /// real, and report per-model latency and deadlines.
    ServeSim {
        /// The scenario (JSON; model paths are relative to it).
        scenario: PathBuf,
        /// Device backend (overrides the scenario's).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Write a Chrome/Perfetto trace here.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Internal errors print one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        // A closed pipe (`aegisrt plan --json | head`) is not an error: stop quietly, with
        // the status a shell gives a process killed by SIGPIPE.
        if msg.contains("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        eprintln!("error: internal error: {msg}");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            eprintln!("{}", usage_error_line(&e.to_string()));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Clap's usage error on one line: the message (its first paragraph) and the usage line;
/// tips and the `--help` hint are left out.
fn usage_error_line(rendered: &str) -> String {
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let message = if message.starts_with("error:") {
        message
    } else {
        format!("error: {message}")
    };
    match rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
    {
        Some(usage) => format!("{message} (usage: {usage}; see --help)"),
        None => format!("{message} (see --help)"),
    }
}

/// A model argument: a directory holding `model.onnx` stands for that file (any other path
/// is kept, and a missing file is reported when the command loads it).
fn model_path(arg: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(arg);
    let inside = path.join("model.onnx");
    Ok(if path.is_dir() && inside.is_file() {
        inside
    } else {
        path
    })
}

fn dispatch(command: Command) -> CliResult<u8> {
    match command {
        Command::Run {
            model,
            device,
            inputs,
            seed,
            output_dir,
            trace,
        } => run::run(
            &model,
            &device,
            &inputs,
            seed,
            output_dir.as_deref(),
            trace.as_deref(),
        ),
        Command::Bench {
            model,
            device,
            iterations,
            warmup,
            json,
        } => run::bench(&model, &device, iterations, warmup, json),
        Command::Profile {
            model,
            threads,
            iterations,
            top,
            json,
        } => run::profile(&model, threads, iterations, top, json),
        Command::Plan { model, svg, json } => inspect::plan(&model, svg.as_deref(), json),
        Command::Check { model, threads } => inspect::check(&model, threads),
        Command::Fit {
            device_memory,
            concurrency,
            json,
            models,
        } => inspect::fit(&device_memory, concurrency, json, &models),
        Command::ServeSim {
            scenario,
            backend,
            trace,
            json,
        } => serve::serve_sim(&scenario, backend, trace.as_deref(), json),
    }
}
