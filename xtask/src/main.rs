//! `cargo xtask <task>`: the project's developer and CI tasks (the rust-analyzer pattern).
//!
//! - `ci`: exactly what CI runs: fmt check, clippy `-D warnings`, tests, docs, `layering`,
//!   `tidy`, `loom`, the CUDA compile check with a stub driver library (every kernel through
//!   NVRTC), and `cuda-emu` (the CUDA C kernels run on the CPU under an emulation shim).
//! - `layering`: the one-way crate chain, read from `cargo metadata`.
//! - `tidy`: forbidden patterns in the tree (also a `#[test]`).
//! - `loom`: the loom models, with `RUSTFLAGS="--cfg loom"`, in their own target dir.
//! - `bench [stream|plan|kernels|exec|sched|all]`: release benchmarks that print figures.
//! - `gpu-build`, `cuda-check`: build the CUDA path against a generated libcuda stub.
//! - `cuda-emu`: the CUDA C kernels compiled as C++ and checked against numpy on the CPU.

mod gpu;
mod layering;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(step: &str, mut c: Command) -> Result<(), String> {
    eprintln!("\n==> xtask: {step}");
    let status = c
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step}: failed ({status})"))
    }
}

fn fmt_check() -> Result<(), String> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    run("fmt --check", c)
}

fn clippy() -> Result<(), String> {
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("clippy -D warnings", c)
}

fn test() -> Result<(), String> {
    let mut c = cargo();
    c.args(["test", "--workspace", "--all-targets"]);
    run("test", c)?;
    // Doc tests separately: `--all-targets` skips them.
    let mut c = cargo();
    c.args(["test", "--workspace", "--doc"]);
    run("doc tests", c)
}

fn docs() -> Result<(), String> {
    let mut c = cargo();
    c.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run("doc", c)
}

/// Crates with loom models, each run under the `loom` profile (optimised like release, but the
/// dependencies the models never run compile unoptimised: see the workspace Cargo.toml).
const LOOM_CRATES: &[&str] = &["aegis-cuda", "aegis-memory", "aegis-sched", "aegis-context"];

fn loom() -> Result<(), String> {
    for krate in LOOM_CRATES {
        let dir = root().join("crates").join(krate).join("tests");
        // Only the `loom_*` targets: other tests use std primitives loom cannot model.
        let mut targets: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_prefix("loom_")
                            .and_then(|_| name.strip_suffix(".rs"))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if targets.is_empty() {
            continue;
        }
        targets.sort();
        let mut c = cargo();
        c.args(["test", "--profile", "loom", "-p", krate]);
        for t in &targets {
            c.args(["--test", t]);
        }
        c.args(["--", "--test-threads=1"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root().join("target").join("loom"))
            .env("LOOM_MAX_PREEMPTIONS", "2");
        run(&format!("loom {krate}"), c)?;
    }
    Ok(())
}

fn bench(what: &str) -> Result<(), String> {
    let all: &[(&str, &str, &str)] = &[
        ("stream", "aegis-cuda", "stream_bench"),
        ("plan", "aegis-memory", "plan_bench"),
        ("kernels", "aegis-exec", "kernel_bench"),
        ("exec", "aegis-exec", "exec_bench"),
        ("sched", "aegis-sched", "sched_bench"),
    ];
    let mut ran = false;
    for (name, krate, example) in all {
        if what == "all" || what == *name {
            let mut c = cargo();
            c.args(["run", "--release", "-p", krate, "--example", example]);
            run(&format!("bench {name}"), c)?;
            ran = true;
        }
    }
    if ran {
        Ok(())
    } else {
        Err(format!(
            "unknown benchmark `{what}` (stream, plan, kernels, exec, sched, all)"
        ))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let root = root();
    let result = match task {
        "ci" => fmt_check()
            .and_then(|_| layering::check(&root))
            .and_then(|_| tidy::check(&root))
            .and_then(|_| clippy())
            .and_then(|_| test())
            .and_then(|_| docs())
            .and_then(|_| loom())
            .and_then(|_| gpu::cuda_check(&root))
            .and_then(|_| gpu::cuda_emu(&root)),
        "fmt" => fmt_check(),
        "clippy" => clippy(),
        "test" => test(),
        "doc" => docs(),
        "layering" => layering::check(&root),
        "tidy" => tidy::check(&root),
        "loom" => loom(),
        "cuda-check" => gpu::cuda_check(&root),
        "cuda-emu" => gpu::cuda_emu(&root),
        "gpu-build" => gpu::gpu_build(&root),
        "bench" => bench(args.get(1).map(String::as_str).unwrap_or("all")),
        _ => {
            eprintln!("usage: cargo xtask <ci|fmt|clippy|test|doc|layering|tidy|loom|cuda-check|cuda-emu|gpu-build|bench [name]>");
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => {
            eprintln!("xtask {task}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}
