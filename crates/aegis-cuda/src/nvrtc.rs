//! CUDA C → PTX at run time with NVRTC (feature `cuda`).
//!
//! NVRTC is loaded with `libloading` when first needed, so building needs no CUDA toolkit:
//! [`Nvrtc::load`] tries `$AEGIS_NVRTC_DIR` first (a folder holding `libnvrtc.so.*`, e.g. the
//! `nvidia/cu13/lib` folder of PyPI's `nvidia-cuda-nvrtc` wheel; its `libnvrtc-builtins` is
//! loaded first, since that folder is not on the loader path), then `libnvrtc.so.13`, `.12`,
//! `.11.2` and `libnvrtc.so` on the loader path.
//!
//! [`KernelCache`] compiles each (source, options, compute capability) once: results are kept
//! in memory and, when given a folder, on disk under a key made of a stable hash of the source
//! and options, the compute capability and NVRTC's version, so a new NVRTC or GPU never reuses
//! stale PTX.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Categorized, CudaError, ErrorCategory};
use crate::raw::cuda::nvrtc as raw;
use crate::sync::{lock, Arc, AtomicUsize, Mutex, Ordering};
use crate::{Device, Module};

/// Library names tried on the loader path, newest first.
pub const LIBRARY_NAMES: [&str; 4] = [
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so.11.2",
    "libnvrtc.so",
];

/// The kernels shipped in `crates/aegis-cuda/kernels`, by file name, for tests and for builds
/// that run away from the source tree.
pub const BUILTIN_KERNELS: [(&str, &str); 3] = [
    ("fill.cu", include_str!("../kernels/fill.cu")),
    ("saxpy.cu", include_str!("../kernels/saxpy.cu")),
    ("spin.cu", include_str!("../kernels/spin.cu")),
];

/// Parameter sizes in bytes of every `.entry` in `ptx` whose signature is understood (what
/// [`crate::Stream::launch`] checks arguments against).
pub fn ptx_entries(ptx: &str) -> HashMap<String, Vec<usize>> {
    crate::cuda::parse_ptx_entries(ptx)
}

/// NVRTC failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NvrtcError {
    /// No NVRTC library could be loaded.
    #[error("NVRTC could not be loaded; tried: {}", tried.join("; "))]
    NotFound {
        /// Each candidate and why it failed.
        tried: Vec<String>,
    },
    /// An NVRTC call failed (not a compile error in the source).
    #[error("{call} failed with NVRTC result {code}: {message}")]
    Call {
        /// The NVRTC function.
        call: &'static str,
        /// `nvrtcResult`.
        code: i32,
        /// NVRTC's description.
        message: String,
    },
    /// The CUDA C source does not compile.
    #[error("compiling `{name}` for compute_{}{} failed:\n{log}", arch.0, arch.1)]
    Compile {
        /// Program name.
        name: String,
        /// Target compute capability.
        arch: (u32, u32),
        /// NVRTC's log.
        log: String,
    },
    /// The on-disk cache could not be read or written.
    #[error("kernel cache {path}: {reason}")]
    Cache {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// Loading the compiled PTX failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

impl Categorized for NvrtcError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::NotFound { .. } | Self::Call { .. } | Self::Compile { .. } => {
                ErrorCategory::Permanent
            }
            Self::Cache { .. } => ErrorCategory::Transient,
            Self::Cuda(e) => e.category(),
        }
    }
}

impl From<raw::CallError> for NvrtcError {
    fn from(e: raw::CallError) -> Self {
        Self::Call {
            call: e.call,
            code: e.code,
            message: e.message,
        }
    }
}

/// A loaded NVRTC.
pub struct Nvrtc {
    raw: raw::Nvrtc,
    version: (i32, i32),
    loaded_from: String,
}

impl fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nvrtc")
            .field("version", &self.version)
            .field("loaded_from", &self.loaded_from)
            .finish()
    }
}

impl Nvrtc {
    /// Loads NVRTC from `$AEGIS_NVRTC_DIR` when set, else from the loader path.
    pub fn load() -> Result<Self, NvrtcError> {
        if let Some(dir) = std::env::var_os("AEGIS_NVRTC_DIR") {
            return Self::load_from_dir(Path::new(&dir));
        }
        let mut tried = Vec::new();
        for name in LIBRARY_NAMES {
            match Self::open(Path::new(name), None) {
                Ok(n) => return Ok(n),
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        Err(NvrtcError::NotFound { tried })
    }

    /// Loads `libnvrtc.so.*` from `dir`, loading its sibling `libnvrtc-builtins.so.*` first.
    pub fn load_from_dir(dir: &Path) -> Result<Self, NvrtcError> {
        let entries = std::fs::read_dir(dir).map_err(|e| NvrtcError::NotFound {
            tried: vec![format!("{}: {e}", dir.display())],
        })?;
        let names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let lib = LIBRARY_NAMES
            .iter()
            .find(|n| names.iter().any(|f| f == *n))
            .map(|n| dir.join(n))
            .ok_or_else(|| NvrtcError::NotFound {
                tried: vec![format!(
                    "{}: no {}",
                    dir.display(),
                    LIBRARY_NAMES.join(" / ")
                )],
            })?;
        // The `.alt` variants are NVRTC's alternative (non-default) builds; skip them.
        let builtins = names
            .iter()
            .filter(|f| f.starts_with("libnvrtc-builtins.so") && !f.contains(".alt"))
            .min()
            .map(|f| dir.join(f));
        Self::open(&lib, builtins.as_deref())
    }

    fn open(lib: &Path, builtins: Option<&Path>) -> Result<Self, NvrtcError> {
        let r = raw::Nvrtc::open(lib, builtins).map_err(|e| NvrtcError::NotFound {
            tried: vec![format!("{}: {e}", lib.display())],
        })?;
        let version = r.version()?;
        Ok(Self {
            raw: r,
            version,
            loaded_from: lib.display().to_string(),
        })
    }

    /// NVRTC's (major, minor) version.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// Compiles CUDA C `source` to PTX for compute capability `arch` (e.g. `(9, 0)`), with
    /// `extra` options appended.
    pub fn compile_ptx(
        &self,
        name: &str,
        source: &str,
        arch: (u32, u32),
        extra: &[&str],
    ) -> Result<String, NvrtcError> {
        let opts = options(arch, extra);
        match self.raw.compile(name, source, &opts)? {
            Ok(ptx) => Ok(ptx),
            Err(log) => Err(NvrtcError::Compile {
                name: name.to_owned(),
                arch,
                log,
            }),
        }
    }
}

fn options(arch: (u32, u32), extra: &[&str]) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture=compute_{}{}", arch.0, arch.1)];
    o.extend(extra.iter().map(|s| (*s).to_owned()));
    o
}

/// 64-bit FNV-1a: stable across Rust versions and platforms (unlike `DefaultHasher`), which a
/// key for files on disk needs.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache key (also the file stem on disk) for one compilation.
pub fn cache_key(
    name: &str,
    source: &str,
    arch: (u32, u32),
    extra: &[&str],
    nvrtc_version: (i32, i32),
) -> String {
    let opts = options(arch, extra).join("\u{1f}");
    let hash = fnv1a64(&[source.as_bytes(), opts.as_bytes()]);
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!(
        "{safe}-{hash:016x}-cc{}{}-nvrtc{}.{}",
        arch.0, arch.1, nvrtc_version.0, nvrtc_version.1
    )
}

/// The default on-disk cache: `$AEGIS_KERNEL_CACHE`, else `$XDG_CACHE_HOME/aegisrt/ptx`, else
/// `$HOME/.cache/aegisrt/ptx`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("AEGIS_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("aegisrt").join("ptx"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("aegisrt").join("ptx"))
}

/// Compiles each kernel once: in memory, then on disk (when a folder is given).
pub struct KernelCache {
    nvrtc: Nvrtc,
    dir: Option<PathBuf>,
    mem: Mutex<HashMap<String, Arc<str>>>,
    compiles: AtomicUsize,
}

impl fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelCache")
            .field("nvrtc", &self.nvrtc)
            .field("dir", &self.dir)
            .finish()
    }
}

impl KernelCache {
    /// A cache over `nvrtc`, persisting to `dir` when given.
    pub fn new(nvrtc: Nvrtc, dir: Option<PathBuf>) -> Self {
        Self {
            nvrtc,
            dir,
            mem: Mutex::new(HashMap::new()),
            compiles: AtomicUsize::new(0),
        }
    }

    /// The NVRTC it compiles with.
    pub fn nvrtc(&self) -> &Nvrtc {
        &self.nvrtc
    }

    /// How many times this cache has actually run NVRTC.
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    /// PTX for `source` at compute capability `arch`: from memory, from disk, or compiled.
    pub fn ptx(
        &self,
        name: &str,
        source: &str,
        arch: (u32, u32),
        extra: &[&str],
    ) -> Result<Arc<str>, NvrtcError> {
        let key = cache_key(name, source, arch, extra, self.nvrtc.version);
        if let Some(p) = lock(&self.mem).get(&key) {
            return Ok(Arc::clone(p));
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{key}.ptx")));
        if let Some(f) = &file {
            if let Ok(text) = std::fs::read_to_string(f) {
                let p: Arc<str> = text.into();
                lock(&self.mem).insert(key, Arc::clone(&p));
                return Ok(p);
            }
        }
        let ptx = self.nvrtc.compile_ptx(name, source, arch, extra)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let (Some(dir), Some(f)) = (&self.dir, &file) {
            write_atomically(dir, f, &ptx)?;
        }
        let p: Arc<str> = ptx.into();
        lock(&self.mem).insert(key, Arc::clone(&p));
        Ok(p)
    }

    /// Compiles (or fetches) `source` for `device`'s compute capability and loads it.
    pub fn module(
        &self,
        device: &Device,
        name: &str,
        source: &str,
        extra: &[&str],
    ) -> Result<Module, NvrtcError> {
        let info = device.info();
        let arch = info.compute_capability.ok_or_else(|| {
            NvrtcError::Cuda(CudaError::WrongBackend {
                call: "KernelCache::module",
                site: crate::CallSite::here(),
                backend: "host",
            })
        })?;
        let ptx = self.ptx(name, source, arch, extra)?;
        Ok(Module::from_ptx(device, &ptx)?)
    }
}

/// Writes through a temporary file and a rename, so a concurrent reader never sees half a file.
fn write_atomically(dir: &Path, file: &Path, text: &str) -> Result<(), NvrtcError> {
    let err = |path: &Path, e: std::io::Error| NvrtcError::Cache {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, file).map_err(|e| err(file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_separates_every_input() {
        let base = cache_key("k", "src", (9, 0), &[], (13, 0));
        assert!(
            base.starts_with("k-") && base.ends_with("-cc90-nvrtc13.0"),
            "{base}"
        );
        assert_eq!(base, cache_key("k", "src", (9, 0), &[], (13, 0)));
        for other in [
            cache_key("k", "src2", (9, 0), &[], (13, 0)),
            cache_key("k", "src", (8, 6), &[], (13, 0)),
            cache_key("k", "src", (9, 0), &["-G"], (13, 0)),
            cache_key("k", "src", (9, 0), &[], (12, 8)),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(cache_key("a/b c", "s", (9, 0), &[], (13, 0))[..5], *"a_b_c");
    }

    #[test]
    fn fnv_is_the_reference_function() {
        // FNV-1a 64 of "a" is af63dc4c8601ec8c; our separator step follows it.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= u64::from(b'a');
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
    }

    #[test]
    fn missing_dir_is_not_found() {
        let e = Nvrtc::load_from_dir(Path::new("/nonexistent/aegis-nvrtc")).unwrap_err();
        assert!(matches!(e, NvrtcError::NotFound { .. }), "{e}");
        assert_eq!(e.category(), ErrorCategory::Permanent);
    }
}
