//! Aligned host blocks with run-time checked borrows of byte ranges.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::sync::{lock, Mutex};
use crate::CudaError;

/// Alignment of every host block: CUDA's allocation granularity for `cudaMalloc` pointers, so
/// plans made for the GPU hold on the host too (and it exceeds any SIMD width we use).
pub(crate) const HOST_ALIGN: usize = 256;

/// Page size for blocks that may be page-locked: such a block owns its pages outright, so its
/// registration never overlaps another's (the driver refuses a page registered twice).
#[cfg(feature = "cuda")]
pub(crate) const PAGE: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Borrow {
    start: usize,
    end: usize,
    write: bool,
    token: u64,
}

#[derive(Debug, Default)]
struct Borrows {
    active: Vec<Borrow>,
    next_token: u64,
}

/// A zero-initialised, 256-byte aligned heap block.
#[derive(Debug)]
pub(crate) struct HostBlock {
    ptr: NonNull<u8>,
    len: usize,
    /// What was allocated (`len` rounded up for page blocks); freed with exactly this.
    layout: Layout,
    id: u64,
    borrows: Mutex<Borrows>,
}

// SAFETY: the block owns its allocation; every access to its bytes goes through `read`/`write`,
// which hand out references only for ranges the borrow tracker proves are not mutably aliased.
unsafe impl Send for HostBlock {}
// SAFETY: as above; the tracker is behind a mutex, so shared use from many threads is sound.
unsafe impl Sync for HostBlock {}

impl HostBlock {
    /// Allocates `len` zeroed bytes, or `None` when the system allocator refuses.
    pub(crate) fn alloc(len: usize, id: u64) -> Option<Self> {
        // A zero-length request still takes one byte, so every block has a real, aligned
        // allocation and no special case is needed when freeing it.
        Self::alloc_layout(
            len,
            Layout::from_size_align(len.max(1), HOST_ALIGN).ok()?,
            id,
        )
    }

    /// Like [`HostBlock::alloc`], but page-aligned and a whole number of pages long
    /// ([`HostBlock::span`]), so the block can be page-locked on its own.
    #[cfg(feature = "cuda")]
    pub(crate) fn alloc_pages(len: usize, id: u64) -> Option<Self> {
        let size = len.max(1).checked_next_multiple_of(PAGE)?;
        Self::alloc_layout(len, Layout::from_size_align(size, PAGE).ok()?, id)
    }

    fn alloc_layout(len: usize, layout: Layout, id: u64) -> Option<Self> {
        debug_assert!(layout.size() >= len.max(1));
        // SAFETY: `layout` has a non-zero size and a valid power-of-two alignment.
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        Some(Self {
            ptr,
            len,
            layout,
            id,
            borrows: Mutex::new(Borrows::default()),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated: `len`, or more for a page block (whole pages).
    #[cfg(feature = "cuda")]
    pub(crate) fn span(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Start of the block, for DMA by the CUDA backend (page-locking and async copies, under
    /// the contracts stated in `raw::cuda`). Never dereferenced outside this module.
    #[cfg(feature = "cuda")]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn acquire(
        &self,
        start: usize,
        end: usize,
        write: bool,
        label: &str,
    ) -> Result<u64, CudaError> {
        if start > end || end > self.len {
            return Err(CudaError::invalid(
                "host_access",
                format!(
                    "range {start}..{end} outside allocation of {} bytes",
                    self.len
                ),
            ));
        }
        let mut b = lock(&self.borrows);
        if start < end {
            let conflict = b
                .active
                .iter()
                .any(|o| o.start < end && start < o.end && (write || o.write));
            if conflict {
                return Err(CudaError::RaceDetected {
                    allocation: self.id,
                    start,
                    end,
                    mode: if write { "written" } else { "read" },
                    label: label.to_owned(),
                });
            }
        }
        b.next_token += 1;
        let token = b.next_token;
        b.active.push(Borrow {
            start,
            end,
            write,
            token,
        });
        Ok(token)
    }

    fn release(&self, token: u64) {
        let mut b = lock(&self.borrows);
        if let Some(i) = b.active.iter().position(|o| o.token == token) {
            b.active.swap_remove(i);
        }
    }

    /// Shared access to `start..end`; fails if any overlapping range is being written.
    pub(crate) fn read(
        &self,
        start: usize,
        end: usize,
        label: &str,
    ) -> Result<ReadGuard<'_>, CudaError> {
        let token = self.acquire(start, end, false, label)?;
        // SAFETY: `start..end` lies inside the allocation (checked in `acquire`); the tracker
        // guarantees no live `WriteGuard` overlaps it until this guard releases its token, so no
        // `&mut` aliases these bytes for the slice's lifetime. The bytes are initialised (zeroed
        // at allocation).
        let slice =
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) };
        Ok(ReadGuard {
            block: self,
            token,
            slice,
        })
    }

    /// Exclusive access to `start..end`; fails if any overlapping range is in use.
    pub(crate) fn write(
        &self,
        start: usize,
        end: usize,
        label: &str,
    ) -> Result<WriteGuard<'_>, CudaError> {
        let token = self.acquire(start, end, true, label)?;
        // SAFETY: as in `read`, and additionally no other guard of any kind overlaps
        // `start..end` while this one lives, so the `&mut` is unique.
        let slice =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), end - start) };
        Ok(WriteGuard {
            block: self,
            token,
            slice,
        })
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc_layout` with exactly `self.layout`, and guards borrow
        // `self`, so none outlives the block.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Shared view of a byte range; released on drop.
#[derive(Debug)]
pub(crate) struct ReadGuard<'a> {
    block: &'a HostBlock,
    token: u64,
    slice: &'a [u8],
}

impl ReadGuard<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.slice
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.block.release(self.token);
    }
}

/// Exclusive view of a byte range; released on drop.
#[derive(Debug)]
pub(crate) struct WriteGuard<'a> {
    block: &'a HostBlock,
    token: u64,
    slice: &'a mut [u8],
}

impl WriteGuard<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.slice
    }
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.slice
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.block.release(self.token);
    }
}

#[cfg(all(test, feature = "cuda"))]
mod tests {
    use super::{HostBlock, PAGE};

    #[test]
    fn page_blocks_own_whole_pages() {
        for len in [0, 1, 4000, 4096, 4097, 70_000] {
            let b = HostBlock::alloc_pages(len, 1).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % PAGE, 0, "{len}");
            assert_eq!(b.span() % PAGE, 0, "{len}");
            assert!(
                b.span() >= len.max(1) && b.span() < len.max(1) + PAGE,
                "{len}"
            );
        }
    }
}
