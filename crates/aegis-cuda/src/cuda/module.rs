//! PTX modules, kernels and checked kernel arguments.

use std::collections::HashMap;
use std::fmt;

use super::device::CudaDevice;
use crate::device::{Device, DeviceRepr};
use crate::error::{CallSite, CudaError, Result};
use crate::memory::DeviceSlice;
use crate::raw::cuda as raw;
use crate::sync::Arc;

pub(crate) struct ModuleInner {
    raw: raw::RawModule,
    dev: Arc<CudaDevice>,
    /// Parameter sizes in bytes of every `.entry` in the PTX, in declaration order.
    entries: HashMap<String, Vec<usize>>,
}

impl Drop for ModuleInner {
    fn drop(&mut self) {
        let m = self.raw;
        self.dev.release(|| raw::module_unload(m, CallSite::here()));
    }
}

/// A PTX module loaded on a CUDA device. Cheap to clone; unloaded when the last clone and
/// every [`Kernel`] from it (and every launch still using one) are gone.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("kernels", &self.kernel_names())
            .finish()
    }
}

impl Module {
    /// JIT-loads PTX (e.g. from [`crate::nvrtc`]) on `device`. The JIT's error log, if any, is
    /// logged with `tracing::error!`. [`CudaError::WrongBackend`] on a host device.
    #[track_caller]
    pub fn from_ptx(device: &Device, ptx: &str) -> Result<Self> {
        let site = CallSite::here();
        let DeviceRepr::Cuda(dev) = &device.repr else {
            return Err(CudaError::WrongBackend {
                call: "Module::from_ptx",
                site,
                backend: "host",
            });
        };
        dev.enter("Module::from_ptx", site)?;
        let raw = match raw::module_load_ptx(ptx, site) {
            Ok(m) => m,
            Err((e, log)) => {
                if !log.is_empty() {
                    tracing::error!(target: "aegis_cuda", error = %e, jit_log = %log, "PTX load failed");
                }
                return Err(dev.fail(e));
            }
        };
        Ok(Self {
            inner: Arc::new(ModuleInner {
                raw,
                dev: Arc::clone(dev),
                entries: parse_ptx_entries(ptx),
            }),
        })
    }

    /// Names of the kernels (`.entry` points) whose signatures were understood.
    pub fn kernel_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.inner.entries.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The kernel `name` (declare it `extern "C"` so its PTX name is not mangled).
    #[track_caller]
    pub fn kernel(&self, name: &str) -> Result<Kernel> {
        let site = CallSite::here();
        let Some(params) = self.inner.entries.get(name) else {
            return Err(CudaError::InvalidArgument {
                call: "Module::kernel",
                site,
                reason: format!(
                    "no kernel `{name}` with a readable signature in the PTX (found: {:?})",
                    self.kernel_names()
                ),
            });
        };
        self.inner.dev.enter("Module::kernel", site)?;
        let raw = self
            .inner
            .dev
            .observe(raw::module_get_function(self.inner.raw, name, site))?;
        Ok(Kernel {
            module: Arc::clone(&self.inner),
            raw,
            name: name.to_owned(),
            params: params.clone(),
        })
    }
}

/// A kernel of a loaded [`Module`], with its parameter list from the PTX. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    module: Arc<ModuleInner>,
    raw: raw::RawFunction,
    name: String,
    params: Vec<usize>,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .field("param_sizes", &self.params)
            .finish()
    }
}

impl Kernel {
    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes of each parameter, as declared in the PTX.
    pub fn param_sizes(&self) -> &[usize] {
        &self.params
    }

    /// How many blocks of `block_threads` threads (with `dynamic_smem` bytes of dynamic
    /// shared memory) fit on one multiprocessor at once, from the driver's occupancy
    /// calculator (registers, shared memory and block limits of this kernel on its device).
    #[track_caller]
    pub fn max_active_blocks_per_sm(&self, block_threads: u32, dynamic_smem: usize) -> Result<u32> {
        let site = CallSite::here();
        let call = "Kernel::max_active_blocks_per_sm";
        self.module.dev.enter(call, site)?;
        self.module.dev.observe(raw::occupancy_max_active_blocks(
            self.raw,
            block_threads,
            dynamic_smem,
            site,
        ))
    }

    pub(crate) fn device(&self) -> &Arc<CudaDevice> {
        &self.module.dev
    }

    pub(crate) fn raw(&self) -> raw::RawFunction {
        self.raw
    }
}

/// Grid or block dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dim3 {
    /// x extent.
    pub x: u32,
    /// y extent.
    pub y: u32,
    /// z extent.
    pub z: u32,
}

impl Dim3 {
    /// A 1-D extent.
    pub fn linear(x: u32) -> Self {
        Self { x, y: 1, z: 1 }
    }

    /// Enough blocks of `block` threads to cover `n` items.
    pub fn cover(n: usize, block: u32) -> Self {
        let block = u64::from(block.max(1));
        let blocks = (n as u64).div_ceil(block).max(1);
        Self::linear(u32::try_from(blocks).unwrap_or(u32::MAX))
    }

    pub(crate) fn checked(self, what: &str, site: CallSite) -> Result<(u32, u32, u32)> {
        if self.x == 0 || self.y == 0 || self.z == 0 {
            return Err(CudaError::InvalidArgument {
                call: "Stream::launch",
                site,
                reason: format!("{what} dimensions {self:?} contain a zero"),
            });
        }
        Ok((self.x, self.y, self.z))
    }
}

impl From<u32> for Dim3 {
    fn from(x: u32) -> Self {
        Self::linear(x)
    }
}

impl From<(u32, u32)> for Dim3 {
    fn from((x, y): (u32, u32)) -> Self {
        Self { x, y, z: 1 }
    }
}

impl From<(u32, u32, u32)> for Dim3 {
    fn from((x, y, z): (u32, u32, u32)) -> Self {
        Self { x, y, z }
    }
}

#[derive(Debug, Clone)]
enum Arg {
    /// A device pointer parameter (8 bytes).
    Slice(DeviceSlice),
    /// A scalar: its bits in the low bytes, its size, its type for messages.
    Scalar {
        bits: u64,
        size: usize,
        ty: &'static str,
    },
}

/// Arguments for [`crate::Stream::launch`], in parameter order. Checked at launch against the
/// kernel's PTX signature (count and sizes), and slices against the stream's device.
#[derive(Debug, Clone, Default)]
pub struct KernelArgs {
    args: Vec<Arg>,
}

impl KernelArgs {
    /// No arguments yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pointer to the first byte of `s` (device memory of the launching device).
    pub fn slice(mut self, s: &DeviceSlice) -> Self {
        self.args.push(Arg::Slice(s.clone()));
        self
    }

    /// A `u32` / `unsigned int` parameter.
    pub fn u32(mut self, v: u32) -> Self {
        self.args.push(Arg::Scalar {
            bits: u64::from(v),
            size: 4,
            ty: "u32",
        });
        self
    }

    /// An `i32` / `int` parameter.
    pub fn i32(mut self, v: i32) -> Self {
        self.args.push(Arg::Scalar {
            bits: u64::from(v as u32),
            size: 4,
            ty: "i32",
        });
        self
    }

    /// An `f32` / `float` parameter.
    pub fn f32(mut self, v: f32) -> Self {
        self.args.push(Arg::Scalar {
            bits: u64::from(v.to_bits()),
            size: 4,
            ty: "f32",
        });
        self
    }

    /// A `u64` / `unsigned long long` / `size_t` parameter.
    pub fn u64(mut self, v: u64) -> Self {
        self.args.push(Arg::Scalar {
            bits: v,
            size: 8,
            ty: "u64",
        });
        self
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    pub(crate) fn slices(&self) -> impl Iterator<Item = &DeviceSlice> {
        self.args.iter().filter_map(|a| match a {
            Arg::Slice(s) => Some(s),
            Arg::Scalar { .. } => None,
        })
    }

    /// The driver's parameter slots, after checking count and sizes against `kernel`.
    pub(crate) fn slots_for(&self, kernel: &Kernel, site: CallSite) -> Result<raw::ParamSlots> {
        let bad = |reason: String| CudaError::InvalidArgument {
            call: "Stream::launch",
            site,
            reason,
        };
        if self.args.len() != kernel.params.len() {
            return Err(bad(format!(
                "kernel `{}` takes {} parameters, {} given",
                kernel.name,
                kernel.params.len(),
                self.args.len()
            )));
        }
        let mut slots = Vec::with_capacity(self.args.len());
        for (i, (arg, &want)) in self.args.iter().zip(&kernel.params).enumerate() {
            let (bits, size, ty) = match arg {
                Arg::Slice(s) => {
                    let ptr = s.device_ptr().ok_or_else(|| {
                        bad(format!("argument {i} is host memory, not device memory"))
                    })?;
                    (ptr, 8, "pointer")
                }
                Arg::Scalar { bits, size, ty } => (*bits, *size, *ty),
            };
            if size != want {
                return Err(bad(format!(
                    "kernel `{}` parameter {i} is {want} bytes, argument is a {size}-byte {ty}",
                    kernel.name
                )));
            }
            slots.push(bits);
        }
        Ok(raw::ParamSlots(slots))
    }
}

/// Parameter sizes of every `.entry` in `ptx`. Entries whose parameter list this parser does
/// not understand are left out, so launching them is refused rather than guessed.
pub(crate) fn parse_ptx_entries(ptx: &str) -> HashMap<String, Vec<usize>> {
    let mut out = HashMap::new();
    let mut rest = ptx;
    while let Some(pos) = rest.find(".entry") {
        rest = &rest[pos + ".entry".len()..];
        let after = rest.trim_start();
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
            .collect();
        if name.is_empty() {
            continue;
        }
        let sig = after[name.len()..].trim_start();
        let Some(body) = sig.strip_prefix('(') else {
            continue;
        };
        let Some(close) = body.find(')') else {
            continue;
        };
        let sizes: Option<Vec<usize>> = body[..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(param_size)
            .collect();
        if let Some(sizes) = sizes {
            out.insert(name, sizes);
        }
    }
    out
}

/// Size of one `.param` declaration, e.g. `.param .u64 .ptr .align 1 k_param_0` (8) or
/// `.param .align 4 .b8 k_param_1[12]` (12).
fn param_size(decl: &str) -> Option<usize> {
    let mut tokens = decl.split_whitespace();
    if tokens.next()? != ".param" {
        return None;
    }
    let mut elem = None;
    let mut count = 1usize;
    for t in tokens {
        if let Some(sz) = scalar_size(t) {
            elem = Some(sz);
        } else if let Some(open) = t.find('[') {
            let n = t[open + 1..].trim_end_matches(']');
            count = n.parse().ok()?;
        }
    }
    Some(elem? * count)
}

fn scalar_size(t: &str) -> Option<usize> {
    Some(match t {
        ".b8" | ".u8" | ".s8" => 1,
        ".b16" | ".u16" | ".s16" | ".f16" => 2,
        ".b32" | ".u32" | ".s32" | ".f32" => 4,
        ".b64" | ".u64" | ".s64" | ".f64" => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entry_signatures() {
        let ptx = "
.version 9.0
.target sm_90
.address_size 64
.visible .entry saxpy(
\t.param .u32 saxpy_param_0,
\t.param .f32 saxpy_param_1,
\t.param .u64 .ptr .align 1 saxpy_param_2,
\t.param .u64 .ptr .align 1 saxpy_param_3
)
{ ret; }
.visible .entry noargs()
{ ret; }
.visible .entry by_value(
\t.param .align 4 .b8 by_value_param_0[12],
\t.param .f64 by_value_param_1
)
{ ret; }
.visible .entry weird(
\t.param .texref weird_param_0
)
{ ret; }
";
        let e = parse_ptx_entries(ptx);
        assert_eq!(e["saxpy"], vec![4, 4, 8, 8]);
        assert_eq!(e["noargs"], Vec::<usize>::new());
        assert_eq!(e["by_value"], vec![12, 8]);
        assert!(
            !e.contains_key("weird"),
            "unknown parameter kinds are refused"
        );
    }

    #[test]
    fn dim3_cover_rounds_up() {
        assert_eq!(Dim3::cover(1000, 256), Dim3::linear(4));
        assert_eq!(Dim3::cover(0, 256), Dim3::linear(1));
        assert_eq!(Dim3::from((2, 3)), Dim3 { x: 2, y: 3, z: 1 });
    }
}
