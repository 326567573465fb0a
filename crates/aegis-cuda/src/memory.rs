//! Device memory: RAII allocations, slices (cheap handles like device pointers) and host
//! access on the host backend.

use std::fmt;
use std::ops::{Deref, DerefMut, Range};

use crate::device::{Device, DeviceRepr};
use crate::error::{CallSite, CudaError, Result};
use crate::host::HostDevice;
use crate::raw::host::{HostBlock, ReadGuard, WriteGuard, HOST_ALIGN};
use crate::sync::Arc;

/// Alignment guaranteed for the start of every allocation (CUDA's `cudaMalloc` granularity).
pub const ALLOCATION_ALIGN: usize = HOST_ALIGN;

/// Backing of an allocation: host memory (host-device memory, or staging memory of either
/// backend) or CUDA device memory.
pub(crate) enum MemInner {
    Host(HostMem),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaMem),
}

pub(crate) struct HostMem {
    /// Page-lock registration of `block` (CUDA staging buffers); declared before `block` so it
    /// is released before the memory is freed.
    #[cfg(feature = "cuda")]
    _pinned: Option<crate::cuda::Pinned>,
    block: HostBlock,
    /// The device whose capacity this allocation is charged to; `None` for host staging
    /// buffers, which live in ordinary (pinned, on CUDA) host memory.
    device: Option<Arc<HostDevice>>,
    /// The device whose streams may use it.
    owner: DeviceRepr,
}

impl Drop for HostMem {
    fn drop(&mut self) {
        if let Some(d) = &self.device {
            d.unreserve(self.block.len() as u64);
        }
    }
}

impl MemInner {
    fn len(&self) -> usize {
        match self {
            Self::Host(h) => h.block.len(),
            #[cfg(feature = "cuda")]
            Self::Cuda(c) => c.len(),
        }
    }

    fn id(&self) -> u64 {
        match self {
            Self::Host(h) => h.block.id(),
            #[cfg(feature = "cuda")]
            Self::Cuda(c) => c.id(),
        }
    }

    pub(crate) fn owner(&self) -> &DeviceRepr {
        match self {
            Self::Host(h) => &h.owner,
            #[cfg(feature = "cuda")]
            Self::Cuda(c) => c.owner(),
        }
    }

    #[track_caller]
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))] // `call` names CUDA misuse
    fn host(&self, call: &'static str) -> Result<&HostMem> {
        match self {
            Self::Host(h) => Ok(h),
            #[cfg(feature = "cuda")]
            Self::Cuda(_) => Err(CudaError::WrongBackend {
                call,
                site: CallSite::here(),
                backend: "cuda",
            }),
        }
    }
}

fn alloc_inner(
    device: &Device,
    len: usize,
    charged: bool,
    call: &'static str,
    site: CallSite,
) -> Result<Arc<MemInner>> {
    match &device.repr {
        DeviceRepr::Host(h) => alloc_host_device(h, len, charged, call, site),
        #[cfg(feature = "cuda")]
        DeviceRepr::Cuda(c) if charged => Ok(Arc::new(MemInner::Cuda(
            crate::cuda::CudaMem::alloc(c, len, call, site)?,
        ))),
        #[cfg(feature = "cuda")]
        DeviceRepr::Cuda(c) => alloc_cuda_staging(c, len, call, site),
    }
}

fn alloc_host_device(
    h: &Arc<HostDevice>,
    len: usize,
    charged: bool,
    call: &'static str,
    site: CallSite,
) -> Result<Arc<MemInner>> {
    h.check_alive(call)?;
    if charged {
        h.reserve(call, len as u64)
            .map_err(|e| with_site(e, site))?;
    }
    let id = h.fresh_id();
    let Some(block) = HostBlock::alloc(len, id) else {
        if charged {
            h.unreserve(len as u64);
        }
        return Err(CudaError::OutOfMemory {
            call,
            site,
            requested: len as u64,
            free: h.capacity().saturating_sub(h.used()),
            capacity: h.capacity(),
        });
    };
    Ok(Arc::new(MemInner::Host(HostMem {
        #[cfg(feature = "cuda")]
        _pinned: None,
        block,
        device: charged.then(|| Arc::clone(h)),
        owner: DeviceRepr::Host(Arc::clone(h)),
    })))
}

/// Staging memory for a CUDA device: whole pages of host memory, page-locked (so copies to
/// and from it are truly asynchronous).
#[cfg(feature = "cuda")]
fn alloc_cuda_staging(
    c: &Arc<crate::cuda::CudaDevice>,
    len: usize,
    call: &'static str,
    site: CallSite,
) -> Result<Arc<MemInner>> {
    c.enter(call, site)?;
    let Some(block) = HostBlock::alloc_pages(len, c.fresh_id()) else {
        return Err(CudaError::OutOfMemory {
            call,
            site,
            requested: len as u64,
            free: 0,
            capacity: 0,
        });
    };
    let pinned = crate::cuda::Pinned::register(c, block.as_ptr(), block.span(), site);
    Ok(Arc::new(MemInner::Host(HostMem {
        _pinned: pinned,
        block,
        device: None,
        owner: DeviceRepr::Cuda(Arc::clone(c)),
    })))
}

fn with_site(e: CudaError, s: CallSite) -> CudaError {
    match e {
        CudaError::OutOfMemory {
            call,
            requested,
            free,
            capacity,
            ..
        } => CudaError::OutOfMemory {
            call,
            site: s,
            requested,
            free,
            capacity,
        },
        other => other,
    }
}

/// An RAII device allocation. Freed (and its bytes returned to the device) when it and every
/// slice of it have been dropped, so work in flight keeps it alive.
#[derive(Clone)]
pub struct DeviceMemory {
    inner: Arc<MemInner>,
}

impl fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("id", &self.inner.id())
            .field("len", &self.len())
            .finish()
    }
}

impl DeviceMemory {
    /// Allocates `len` zeroed bytes on `device`; fails fast with
    /// [`CudaError::OutOfMemory`] when the device's free memory is short.
    #[track_caller]
    pub fn alloc(device: &Device, len: usize) -> Result<Self> {
        Ok(Self {
            inner: alloc_inner(device, len, true, "DeviceMemory::alloc", CallSite::here())?,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True for a zero-byte allocation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole allocation as a slice.
    pub fn as_slice(&self) -> DeviceSlice {
        DeviceSlice {
            mem: Arc::clone(&self.inner),
            start: 0,
            end: self.len(),
        }
    }

    /// A sub-range; fails when it is out of bounds.
    #[track_caller]
    pub fn slice(&self, range: Range<usize>) -> Result<DeviceSlice> {
        self.as_slice().slice(range)
    }
}

/// Host memory for staging copies (page-locked on CUDA when large). Not charged to a device
/// budget.
///
/// On CUDA the run-time borrow tracker sees host access but not the copy engine: a copy
/// enqueued while the host holds a guard on the buffer is refused
/// ([`CudaError::RaceDetected`]), but reading the buffer before the copy into it has been
/// synchronised is the caller's ordering bug, as with any CUDA staging buffer.
#[derive(Clone)]
pub struct HostBuffer {
    inner: Arc<MemInner>,
}

impl fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBuffer")
            .field("len", &self.inner.len())
            .finish()
    }
}

impl HostBuffer {
    /// Allocates `len` zeroed bytes of staging memory usable with `device`'s streams.
    #[track_caller]
    pub fn alloc(device: &Device, len: usize) -> Result<Self> {
        Ok(Self {
            inner: alloc_inner(device, len, false, "HostBuffer::alloc", CallSite::here())?,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True for a zero-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole buffer as a slice usable in stream copies.
    pub fn as_slice(&self) -> DeviceSlice {
        DeviceSlice {
            mem: Arc::clone(&self.inner),
            start: 0,
            end: self.len(),
        }
    }

    /// Reads the buffer from the host (after the copies into it were synchronised).
    #[track_caller]
    pub fn read(&self) -> Result<HostRead<'_>> {
        let h = self.inner.host("HostBuffer::read")?;
        Ok(HostRead(h.block.read(0, self.len(), "host")?))
    }

    /// Writes the buffer from the host.
    #[track_caller]
    pub fn write(&self) -> Result<HostWrite<'_>> {
        let h = self.inner.host("HostBuffer::write")?;
        Ok(HostWrite(h.block.write(0, self.len(), "host")?))
    }
}

/// A byte range of device (or staging) memory: a cheap handle, like a device pointer plus a
/// length, that keeps its allocation alive.
#[derive(Clone)]
pub struct DeviceSlice {
    mem: Arc<MemInner>,
    start: usize,
    end: usize,
}

impl fmt::Debug for DeviceSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceSlice(alloc {}, {}..{})",
            self.mem.id(),
            self.start,
            self.end
        )
    }
}

impl DeviceSlice {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Offset of this range within its allocation.
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Id of the allocation this range belongs to.
    pub fn allocation_id(&self) -> u64 {
        self.mem.id()
    }

    /// A sub-range of this range (relative offsets).
    #[track_caller]
    pub fn slice(&self, range: Range<usize>) -> Result<DeviceSlice> {
        if range.start > range.end || range.end > self.len() {
            return Err(CudaError::InvalidArgument {
                call: "DeviceSlice::slice",
                site: CallSite::here(),
                reason: format!(
                    "range {}..{} outside a slice of {} bytes",
                    range.start,
                    range.end,
                    self.len()
                ),
            });
        }
        Ok(DeviceSlice {
            mem: Arc::clone(&self.mem),
            start: self.start + range.start,
            end: self.start + range.end,
        })
    }

    /// True when both ranges share at least one byte of the same allocation.
    pub fn overlaps(&self, other: &DeviceSlice) -> bool {
        Arc::ptr_eq(&self.mem, &other.mem) && self.start < other.end && other.start < self.end
    }

    /// True when this range is host memory (host-device memory or a [`HostBuffer`]).
    pub fn is_host_accessible(&self) -> bool {
        matches!(&*self.mem, MemInner::Host(_))
    }

    pub(crate) fn owner(&self) -> &DeviceRepr {
        self.mem.owner()
    }

    /// The CUDA device address of the first byte, for CUDA device memory.
    #[cfg(feature = "cuda")]
    pub(crate) fn device_ptr(&self) -> Option<u64> {
        match &*self.mem {
            MemInner::Cuda(c) => Some(c.ptr() + self.start as u64),
            MemInner::Host(_) => None,
        }
    }

    /// The host address of the first byte, for host memory (DMA source/target on CUDA).
    #[cfg(feature = "cuda")]
    pub(crate) fn host_ptr(&self) -> Option<*mut u8> {
        match &*self.mem {
            MemInner::Host(h) => Some(h.block.as_ptr().wrapping_add(self.start)),
            MemInner::Cuda(_) => None,
        }
    }

    /// Shared host access to the bytes (host memory only; [`CudaError::WrongBackend`] for CUDA
    /// device memory). Fails with [`CudaError::RaceDetected`] if another piece of work is
    /// writing an overlapping range at this moment — on a GPU that would be a silent data race.
    #[track_caller]
    pub fn host_read(&self, label: &str) -> Result<HostRead<'_>> {
        let h = self.mem.host("DeviceSlice::host_read")?;
        Ok(HostRead(h.block.read(self.start, self.end, label)?))
    }

    /// Exclusive host access to the bytes; see [`DeviceSlice::host_read`].
    #[track_caller]
    pub fn host_write(&self, label: &str) -> Result<HostWrite<'_>> {
        let h = self.mem.host("DeviceSlice::host_write")?;
        Ok(HostWrite(h.block.write(self.start, self.end, label)?))
    }
}

/// Shared access to a byte range; released on drop.
#[derive(Debug)]
pub struct HostRead<'a>(ReadGuard<'a>);

impl Deref for HostRead<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// Exclusive access to a byte range; released on drop.
#[derive(Debug)]
pub struct HostWrite<'a>(WriteGuard<'a>);

impl Deref for HostWrite<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl DerefMut for HostWrite<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.bytes_mut()
    }
}
