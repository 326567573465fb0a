//! One device buffer per prepared model, carved into tensors at planned offsets.

use aegis_cuda::DeviceSlice;

use crate::error::MemoryError;
use crate::planner::AllocationPlan;
use crate::pool::{DeviceBuffer, DeviceMemoryPool};

/// A buffer of `plan.peak_bytes` that hands out each planned tensor's bytes as a
/// [`DeviceSlice`]. Built when a model is prepared; running it allocates nothing.
#[derive(Debug)]
pub struct Arena {
    buffer: DeviceBuffer,
    plan: AllocationPlan,
}

impl Arena {
    /// Validates `plan` and allocates its peak from `pool`.
    ///
    /// # Errors
    /// [`MemoryError::InvalidPlan`] for a broken plan; the pool's errors otherwise.
    pub fn new(pool: &DeviceMemoryPool, plan: AllocationPlan) -> Result<Self, MemoryError> {
        plan.validate()?;
        let buffer = pool.allocate(plan.peak_bytes)?;
        Ok(Self { buffer, plan })
    }

    /// The plan this arena follows.
    pub fn plan(&self) -> &AllocationPlan {
        &self.plan
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.buffer.len()
    }

    /// True for an arena with nothing to hold.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The bytes of `tensor` (its unaligned size, at its planned offset).
    ///
    /// # Errors
    /// [`MemoryError::UnknownTensor`] when the plan does not hold it.
    pub fn view(&self, tensor: usize) -> Result<DeviceSlice, MemoryError> {
        let (Some(offset), Some(l)) = (self.plan.offset_of(tensor), self.plan.lifetime_of(tensor))
        else {
            return Err(MemoryError::UnknownTensor { tensor });
        };
        self.slice(offset, l.size_bytes)
    }

    /// A checked range of the arena.
    ///
    /// # Errors
    /// [`MemoryError::OutOfArena`] when the range is past the end.
    pub fn slice(&self, offset: u64, len: u64) -> Result<DeviceSlice, MemoryError> {
        self.buffer.slice(offset, len)
    }
}
