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

pub(crate) struct MemInner {
    block: HostBlock,
    /// The device whose capacity this allocation is charged to; `None` for host staging
    /// buffers, which live in ordinary (pinned, on CUDA) host memory.
    device: Option<Arc<HostDevice>>,
    pub(crate) owner: Arc<HostDevice>,
}

impl Drop for MemInner {
    fn drop(&mut self) {
        if let Some(d) = &self.device {
            d.unreserve(self.block.len() as u64);
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
    let DeviceRepr::Host(h) = &device.repr;
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
    Ok(Arc::new(MemInner {
        block,
        device: charged.then(|| Arc::clone(h)),
        owner: Arc::clone(h),
    }))
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
            .field("id", &self.inner.block.id())
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
        self.inner.block.len()
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

/// Host memory for staging copies (page-locked on CUDA). Not charged to a device budget.
#[derive(Clone)]
pub struct HostBuffer {
    inner: Arc<MemInner>,
}

impl fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBuffer")
            .field("len", &self.inner.block.len())
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
        self.inner.block.len()
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
    pub fn read(&self) -> Result<HostRead<'_>> {
        Ok(HostRead(self.inner.block.read(0, self.len(), "host")?))
    }

    /// Writes the buffer from the host.
    pub fn write(&self) -> Result<HostWrite<'_>> {
        Ok(HostWrite(self.inner.block.write(0, self.len(), "host")?))
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
            self.mem.block.id(),
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
        self.mem.block.id()
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

    pub(crate) fn owner(&self) -> &Arc<HostDevice> {
        &self.mem.owner
    }

    /// Shared host access to the bytes (host backend). Fails with
    /// [`CudaError::RaceDetected`] if another piece of work is writing an overlapping range at
    /// this moment — on a GPU that would be a silent data race.
    pub fn host_read(&self, label: &str) -> Result<HostRead<'_>> {
        Ok(HostRead(self.mem.block.read(self.start, self.end, label)?))
    }

    /// Exclusive host access to the bytes (host backend); see [`DeviceSlice::host_read`].
    pub fn host_write(&self, label: &str) -> Result<HostWrite<'_>> {
        Ok(HostWrite(
            self.mem.block.write(self.start, self.end, label)?,
        ))
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
