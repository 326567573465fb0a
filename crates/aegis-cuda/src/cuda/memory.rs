//! CUDA device memory and page-locked staging memory.

use crate::device::DeviceRepr;
use crate::error::{CallSite, CudaError, Result};
use crate::raw::cuda as raw;
use crate::sync::Arc;

/// An RAII device allocation (`cuMemAlloc`), zero-filled at allocation.
pub(crate) struct CudaMem {
    ptr: raw::DevicePtr,
    len: usize,
    id: u64,
    owner: DeviceRepr,
    dev: Arc<super::CudaDevice>,
}

impl CudaMem {
    pub(crate) fn alloc(
        dev: &Arc<super::CudaDevice>,
        len: usize,
        call: &'static str,
        site: CallSite,
    ) -> Result<Self> {
        dev.enter(call, site)?;
        // cuMemAlloc rejects 0 bytes; an empty allocation needs no device memory at all.
        let ptr = if len == 0 {
            0
        } else {
            match raw::mem_alloc(len, site) {
                Ok(p) => p,
                Err(CudaError::Driver { code, .. })
                    if code == super::codes::OUT_OF_MEMORY as u32 =>
                {
                    let (free, capacity) = dev.mem_info_for_report();
                    return Err(CudaError::OutOfMemory {
                        call,
                        site,
                        requested: len as u64,
                        free,
                        capacity,
                    });
                }
                Err(e) => return Err(dev.fail(e)),
            }
        };
        let mem = Self {
            ptr,
            len,
            id: dev.fresh_id(),
            owner: DeviceRepr::Cuda(Arc::clone(dev)),
            dev: Arc::clone(dev),
        };
        dev.charge(len as u64);
        if len > 0 {
            // Synchronous fill on the legacy default stream: every AegisRT stream is a blocking
            // stream, so work enqueued later on any of them is ordered after it. On error `mem`
            // is dropped (freed) on the way out.
            dev.observe(raw::memset_d8(ptr, 0, len, site))?;
        }
        Ok(mem)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn ptr(&self) -> raw::DevicePtr {
        self.ptr
    }

    pub(crate) fn owner(&self) -> &DeviceRepr {
        &self.owner
    }
}

impl Drop for CudaMem {
    fn drop(&mut self) {
        self.dev.uncharge(self.len as u64);
        if self.ptr != 0 {
            let ptr = self.ptr;
            self.dev.release(|| raw::mem_free(ptr, CallSite::here()));
        }
    }
}

/// A page-lock registration of a staging buffer's host memory, undone on drop (which the
/// owner orders before freeing the memory).
pub(crate) struct Pinned {
    ptr: usize,
    dev: Arc<super::CudaDevice>,
}

impl Pinned {
    /// Registers the `len` bytes at `ptr` (whole pages the buffer owns alone); `None`
    /// (pageable staging, still correct, copies just stage through the driver and a copy
    /// into it waits for its stream) when the driver refuses. Every staging buffer is pinned,
    /// small ones too: they are allocated once and reused (an executor's output slots), and
    /// a copy into pageable memory blocks the host until the stream has run up to it.
    pub(crate) fn register(
        dev: &Arc<super::CudaDevice>,
        ptr: *mut u8,
        len: usize,
        site: CallSite,
    ) -> Option<Self> {
        match raw::host_register(ptr, len, site) {
            Ok(()) => Some(Self {
                ptr: ptr as usize,
                dev: Arc::clone(dev),
            }),
            Err(e) => {
                tracing::debug!(target: "aegis_cuda", error = %e, len, "staging buffer left pageable");
                None
            }
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let ptr = self.ptr as *mut u8;
        self.dev
            .release(|| raw::host_unregister(ptr, CallSite::here()));
    }
}
