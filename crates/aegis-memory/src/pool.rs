//! The budgeted device memory pool and its RAII buffers.

use std::fmt;

use aegis_cuda::sync::{Arc, AtomicU64, Ordering};
use aegis_cuda::{Device, DeviceMemory, DeviceSlice};

use crate::error::MemoryError;

/// Lock-free accounting of a hard byte budget.
///
/// Reservations go through one compare-and-swap loop on the bytes in use, so the budget is
/// never exceeded, not even for an instant, whatever the interleaving (a loom model checks
/// this). There is no waiting and no retry on a full budget: the request fails at once.
#[derive(Debug)]
pub struct BudgetCounter {
    budget: u64,
    in_use: AtomicU64,
    peak: AtomicU64,
    live: AtomicU64,
    total: AtomicU64,
}

/// A snapshot of a pool's counters. Each field is read atomically, the set is not (they
/// may be from slightly different instants under concurrent use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// The hard budget in bytes.
    pub budget: u64,
    /// Bytes currently reserved by live buffers.
    pub in_use: u64,
    /// Highest `in_use` ever reached.
    pub peak: u64,
    /// Buffers currently alive.
    pub live_allocations: u64,
    /// Successful allocations since the pool was made.
    pub total_allocations: u64,
}

impl PoolStats {
    /// Bytes that can still be reserved.
    pub fn available(&self) -> u64 {
        self.budget.saturating_sub(self.in_use)
    }
}

impl BudgetCounter {
    /// A counter for `budget` bytes, nothing reserved.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            in_use: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            live: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` from `counter`, or fails at once with
    /// [`MemoryError::BudgetExceeded`]. The reservation is given back when the returned guard
    /// drops. (An associated function because loom's `Arc` cannot be a method receiver.)
    ///
    /// # Errors
    /// [`MemoryError::BudgetExceeded`] (Transient) when `bytes` do not fit.
    pub fn try_reserve(counter: &Arc<Self>, bytes: u64) -> Result<Reservation, MemoryError> {
        let mut current = counter.in_use.load(Ordering::Acquire);
        let new = loop {
            let Some(new) = current.checked_add(bytes).filter(|&n| n <= counter.budget) else {
                return Err(MemoryError::BudgetExceeded {
                    requested: bytes,
                    available: counter.budget.saturating_sub(current),
                    budget: counter.budget,
                });
            };
            match counter.in_use.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break new,
                Err(seen) => current = seen,
            }
        };
        counter.peak.fetch_max(new, Ordering::AcqRel);
        counter.live.fetch_add(1, Ordering::AcqRel);
        counter.total.fetch_add(1, Ordering::AcqRel);
        Ok(Reservation {
            counter: Arc::clone(counter),
            bytes,
        })
    }

    /// The current counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            budget: self.budget,
            in_use: self.in_use.load(Ordering::Acquire),
            peak: self.peak.load(Ordering::Acquire),
            live_allocations: self.live.load(Ordering::Acquire),
            total_allocations: self.total.load(Ordering::Acquire),
        }
    }
}

/// Bytes reserved from a [`BudgetCounter`]; given back on drop.
pub struct Reservation {
    counter: Arc<BudgetCounter>,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Cannot underflow: these exact bytes were added by the matching reservation.
        self.counter.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
        self.counter.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pool of device memory with a hard byte budget over Layer 1's [`DeviceMemory`].
///
/// Cheap to clone (clones share the budget). Every allocation is checked against the budget
/// first (lock-free), then taken from the device; either failure is returned at once.
#[derive(Clone)]
pub struct DeviceMemoryPool {
    device: Device,
    counter: Arc<BudgetCounter>,
}

impl fmt::Debug for DeviceMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceMemoryPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl DeviceMemoryPool {
    /// A pool on `device` that will never hold more than `budget_bytes` at once.
    pub fn new(device: &Device, budget_bytes: u64) -> Self {
        Self {
            device: device.clone(),
            counter: Arc::new(BudgetCounter::new(budget_bytes)),
        }
    }

    /// The device the pool allocates from.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The current counters.
    pub fn stats(&self) -> PoolStats {
        self.counter.stats()
    }

    /// Allocates `len` zeroed bytes.
    ///
    /// # Errors
    /// [`MemoryError::BudgetExceeded`] when the budget is short,
    /// [`MemoryError::DeviceOutOfMemory`] when the device is (both Transient; nothing is
    /// held afterwards), [`MemoryError::SizeOverflow`] when `len` does not fit the address
    /// space, [`MemoryError::Device`] for other Layer 1 failures (e.g. a poisoned device).
    pub fn allocate(&self, len: u64) -> Result<DeviceBuffer, MemoryError> {
        let host_len = usize::try_from(len).map_err(|_| MemoryError::SizeOverflow {
            what: "allocation length",
        })?;
        let reservation = BudgetCounter::try_reserve(&self.counter, len)?;
        // On failure the reservation drops here and the budget is whole again.
        let memory = DeviceMemory::alloc(&self.device, host_len).map_err(MemoryError::from)?;
        tracing::trace!(bytes = len, "pool allocation");
        Ok(DeviceBuffer {
            memory,
            _reservation: reservation,
        })
    }
}

/// An RAII device buffer from a [`DeviceMemoryPool`]: its bytes go back to the pool's
/// budget when it drops.
///
/// Slices taken from it keep the device memory alive (as work in flight must), but the
/// budget is released when the buffer itself drops: keep the buffer until the work that
/// uses its slices has been synchronised.
pub struct DeviceBuffer {
    // Field order is drop order: device memory first, then the budget.
    memory: DeviceMemory,
    _reservation: Reservation,
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("len", &self.memory.len())
            .finish()
    }
}

impl DeviceBuffer {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.memory.len() as u64
    }

    /// True for a zero-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// The whole buffer as a slice.
    pub fn as_slice(&self) -> DeviceSlice {
        self.memory.as_slice()
    }

    /// A checked sub-range.
    ///
    /// # Errors
    /// [`MemoryError::OutOfArena`] when `offset + len` is past the end.
    pub fn slice(&self, offset: u64, len: u64) -> Result<DeviceSlice, MemoryError> {
        let out = || MemoryError::OutOfArena {
            offset,
            len,
            arena_len: self.len(),
        };
        let end = offset.checked_add(len).ok_or_else(out)?;
        if end > self.len() {
            return Err(out());
        }
        // Both fit in usize: they are at most the buffer's own usize length.
        let (start, end) = (offset as usize, end as usize);
        Ok(self.memory.slice(start..end)?)
    }
}
