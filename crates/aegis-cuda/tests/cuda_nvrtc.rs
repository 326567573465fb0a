#![cfg(feature = "cuda")]
//! NVRTC: every CUDA C kernel in the repository compiles to PTX, the PTX signatures parse, and
//! the cache compiles once. Needs NVRTC but no GPU:
//!
//! ```sh
//! pip install --target /tmp/nvrtc nvidia-cuda-nvrtc==13.0.88
//! AEGIS_NVRTC_DIR=/tmp/nvrtc/nvidia/cu13/lib cargo xtask cuda-check
//! ```
//!
//! `AEGIS_KERNEL_ROOT` names the folder searched for `*.cu` (the repository; by default the
//! one this crate was built from, or only the kernels embedded in the library when that is
//! absent, as on the GPU machine).

use std::path::{Path, PathBuf};

use aegis_cuda::nvrtc::{ptx_entries, KernelCache, Nvrtc, NvrtcError, BUILTIN_KERNELS};

/// Hopper (H100/H200) and Turing, the oldest architecture NVRTC 13 targets.
const ARCHES: [(u32, u32); 2] = [(9, 0), (7, 5)];

fn nvrtc() -> Nvrtc {
    Nvrtc::load()
        .unwrap_or_else(|e| panic!("set AEGIS_NVRTC_DIR or put libnvrtc on the loader path: {e}"))
}

fn find_cu(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !(name.starts_with('.')
                || name == "target"
                || name.starts_with("target-")
                || name == "fuzz")
            {
                find_cu(&p, out);
            }
        } else if name.ends_with(".cu") {
            out.push(p);
        }
    }
}

fn kernel_sources() -> Vec<(String, String)> {
    let root = std::env::var_os("AEGIS_KERNEL_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let mut files = Vec::new();
    find_cu(&root, &mut files);
    if files.is_empty() {
        println!(
            "{} has no .cu files: checking the embedded kernels",
            root.display()
        );
        return BUILTIN_KERNELS
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect();
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_kernel_in_the_repository_compiles() {
    let nvrtc = nvrtc();
    println!("NVRTC {:?}", nvrtc.version());
    let sources = kernel_sources();
    assert!(sources.len() >= BUILTIN_KERNELS.len());
    let mut failures = Vec::new();
    for (name, src) in &sources {
        for arch in ARCHES {
            match nvrtc.compile_ptx(name, src, arch, &[]) {
                Ok(ptx) => {
                    let entries = ptx_entries(&ptx);
                    // Every `__global__` must be launchable: its signature has to parse.
                    let globals = src.matches("__global__").count();
                    if entries.len() != globals {
                        failures.push(format!(
                            "{name} {arch:?}: {globals} kernels, {} parsed entries {entries:?}",
                            entries.len()
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name} {arch:?}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("compiled {} kernel files for {ARCHES:?}", sources.len());
}

#[test]
fn builtin_signatures_match_the_sources() {
    let nvrtc = nvrtc();
    let get = |file: &str| BUILTIN_KERNELS.iter().find(|(f, _)| *f == file).unwrap().1;
    let saxpy = ptx_entries(
        &nvrtc
            .compile_ptx("saxpy.cu", get("saxpy.cu"), (9, 0), &[])
            .unwrap(),
    );
    assert_eq!(saxpy["saxpy"], vec![4, 8, 8, 4]);
    let fill = ptx_entries(
        &nvrtc
            .compile_ptx("fill.cu", get("fill.cu"), (9, 0), &[])
            .unwrap(),
    );
    assert_eq!(fill["fill_f32"], vec![8, 4, 4]);
    let spin = ptx_entries(
        &nvrtc
            .compile_ptx("spin.cu", get("spin.cu"), (9, 0), &[])
            .unwrap(),
    );
    assert_eq!(spin["spin_then_increment"], vec![8, 8]);
}

#[test]
fn compile_errors_carry_the_log() {
    let nvrtc = nvrtc();
    let err = nvrtc
        .compile_ptx(
            "broken.cu",
            "extern \"C\" __global__ void k() { undefined_thing(); }",
            (9, 0),
            &[],
        )
        .unwrap_err();
    match &err {
        NvrtcError::Compile { name, arch, log } => {
            assert_eq!((name.as_str(), *arch), ("broken.cu", (9, 0)));
            assert!(log.contains("undefined_thing"), "{log}");
        }
        other => panic!("expected a compile error, got {other}"),
    }
}

#[test]
fn cache_compiles_once_in_memory_and_on_disk() {
    let dir = std::env::temp_dir().join(format!("aegis-ptx-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = BUILTIN_KERNELS[0].1;
    let first = KernelCache::new(nvrtc(), Some(dir.clone()));
    let a = first.ptx("fill", src, (9, 0), &[]).unwrap();
    let b = first.ptx("fill", src, (9, 0), &[]).unwrap();
    assert_eq!(first.compiles(), 1);
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    first.ptx("fill", src, (8, 0), &[]).unwrap();
    assert_eq!(first.compiles(), 2, "another capability is another compile");
    // A fresh cache (a new process) finds the PTX on disk.
    let second = KernelCache::new(nvrtc(), Some(dir.clone()));
    let c = second.ptx("fill", src, (9, 0), &[]).unwrap();
    assert_eq!(second.compiles(), 0);
    assert_eq!(*a, *c);
    assert!(a.contains(".entry fill_f32"));
    std::fs::remove_dir_all(&dir).unwrap();
}
