//! Per-context resource budgets: device memory bytes and streams, accounted lock-free.

use std::fmt;

use aegis_cuda::sync::{AtomicU64, AtomicUsize, Ordering};

use crate::error::{ContextError, Resource};

/// The limits a context is created with: plain, copyable numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BudgetLimits {
    /// Device memory the context may hold at once, in bytes.
    pub memory_bytes: u64,
    /// Streams the context may use at once.
    pub streams: usize,
}

impl BudgetLimits {
    /// Limits of `memory_bytes` bytes and `streams` streams.
    pub fn new(memory_bytes: u64, streams: usize) -> Self {
        Self {
            memory_bytes,
            streams,
        }
    }

    /// Rejects zero limits (a context that can hold nothing or run nowhere is a caller bug).
    ///
    /// # Errors
    /// [`ContextError::ZeroBudget`] naming the zero resource.
    pub fn validate(&self) -> Result<(), ContextError> {
        if self.memory_bytes == 0 {
            return Err(ContextError::ZeroBudget {
                resource: Resource::Memory,
            });
        }
        if self.streams == 0 {
            return Err(ContextError::ZeroBudget {
                resource: Resource::Streams,
            });
        }
        Ok(())
    }
}

impl fmt::Display for BudgetLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of device memory, {} stream(s)",
            crate::fmt_bytes(self.memory_bytes),
            self.streams
        )
    }
}

/// A context's budget and its live use: device memory bytes and streams.
///
/// Every reservation is one compare-and-swap loop on the amount in use, so the limit is never
/// exceeded, not even for an instant, whatever the interleaving (a loom model checks this).
/// A reservation that does not fit fails at once; releasing more than is held is detected and
/// refused (the counter is left unchanged) instead of wrapping around.
#[derive(Debug)]
pub struct ResourceBudget {
    limits: BudgetLimits,
    memory_used: AtomicU64,
    memory_peak: AtomicU64,
    streams_used: AtomicUsize,
    streams_peak: AtomicUsize,
}

impl ResourceBudget {
    /// A budget with nothing in use.
    ///
    /// # Errors
    /// [`ContextError::ZeroBudget`] for a zero limit.
    pub fn new(limits: BudgetLimits) -> Result<Self, ContextError> {
        limits.validate()?;
        Ok(Self {
            limits,
            memory_used: AtomicU64::new(0),
            memory_peak: AtomicU64::new(0),
            streams_used: AtomicUsize::new(0),
            streams_peak: AtomicUsize::new(0),
        })
    }

    /// The limits.
    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    /// Bytes held now.
    pub fn memory_used(&self) -> u64 {
        self.memory_used.load(Ordering::Acquire)
    }

    /// Most bytes ever held at once.
    pub fn memory_peak(&self) -> u64 {
        self.memory_peak.load(Ordering::Acquire)
    }

    /// Streams held now.
    pub fn streams_used(&self) -> usize {
        self.streams_used.load(Ordering::Acquire)
    }

    /// Most streams ever held at once.
    pub fn streams_peak(&self) -> usize {
        self.streams_peak.load(Ordering::Acquire)
    }

    /// Bytes that can still be allocated.
    pub fn memory_available(&self) -> u64 {
        self.limits.memory_bytes.saturating_sub(self.memory_used())
    }

    /// True when `bytes` more would fit right now (advisory: another thread may take them
    /// first; [`Self::allocate_memory`] is the authoritative check).
    pub fn can_allocate(&self, bytes: u64) -> bool {
        self.memory_used()
            .checked_add(bytes)
            .is_some_and(|n| n <= self.limits.memory_bytes)
    }

    /// True when one more stream would fit right now (advisory, like [`Self::can_allocate`]).
    pub fn can_acquire_stream(&self) -> bool {
        self.streams_used() < self.limits.streams
    }

    /// Reserves `bytes` of the memory budget.
    ///
    /// # Errors
    /// [`ContextError::BudgetExceeded`] (Transient) when they do not fit; nothing is held then.
    pub fn allocate_memory(&self, bytes: u64) -> Result<(), ContextError> {
        let limit = self.limits.memory_bytes;
        let mut current = self.memory_used.load(Ordering::Acquire);
        let new = loop {
            let Some(new) = current.checked_add(bytes).filter(|&n| n <= limit) else {
                return Err(ContextError::BudgetExceeded {
                    resource: Resource::Memory,
                    requested: bytes,
                    available: limit.saturating_sub(current),
                    limit,
                });
            };
            match self.memory_used.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break new,
                Err(seen) => current = seen,
            }
        };
        self.memory_peak.fetch_max(new, Ordering::AcqRel);
        Ok(())
    }

    /// Gives back `bytes` of the memory budget.
    ///
    /// # Errors
    /// [`ContextError::ReleaseUnderflow`] (Permanent: a caller bug) when fewer than `bytes`
    /// are held; the counter is left unchanged.
    pub fn release_memory(&self, bytes: u64) -> Result<(), ContextError> {
        let mut current = self.memory_used.load(Ordering::Acquire);
        loop {
            let Some(new) = current.checked_sub(bytes) else {
                return Err(ContextError::ReleaseUnderflow {
                    resource: Resource::Memory,
                    released: bytes,
                    in_use: current,
                });
            };
            match self.memory_used.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Reserves `n` streams.
    ///
    /// # Errors
    /// [`ContextError::BudgetExceeded`] (Transient) when they do not fit.
    pub fn acquire_streams(&self, n: usize) -> Result<(), ContextError> {
        let limit = self.limits.streams;
        let mut current = self.streams_used.load(Ordering::Acquire);
        let new = loop {
            let Some(new) = current.checked_add(n).filter(|&v| v <= limit) else {
                return Err(ContextError::BudgetExceeded {
                    resource: Resource::Streams,
                    requested: n as u64,
                    available: limit.saturating_sub(current) as u64,
                    limit: limit as u64,
                });
            };
            match self.streams_used.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break new,
                Err(seen) => current = seen,
            }
        };
        self.streams_peak.fetch_max(new, Ordering::AcqRel);
        Ok(())
    }

    /// Gives back `n` streams.
    ///
    /// # Errors
    /// [`ContextError::ReleaseUnderflow`] when fewer than `n` are held.
    pub fn release_streams(&self, n: usize) -> Result<(), ContextError> {
        let mut current = self.streams_used.load(Ordering::Acquire);
        loop {
            let Some(new) = current.checked_sub(n) else {
                return Err(ContextError::ReleaseUnderflow {
                    resource: Resource::Streams,
                    released: n as u64,
                    in_use: current as u64,
                });
            };
            match self.streams_used.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Reserves `bytes` and returns a guard that gives them back when dropped.
    ///
    /// # Errors
    /// As [`Self::allocate_memory`].
    pub fn memory_guard(&self, bytes: u64) -> Result<MemoryGrant<'_>, ContextError> {
        self.allocate_memory(bytes)?;
        Ok(MemoryGrant {
            budget: self,
            bytes,
        })
    }

    /// Reserves `n` streams and returns a guard that gives them back when dropped.
    ///
    /// # Errors
    /// As [`Self::acquire_streams`].
    pub fn stream_guard(&self, n: usize) -> Result<StreamGrant<'_>, ContextError> {
        self.acquire_streams(n)?;
        Ok(StreamGrant { budget: self, n })
    }
}

/// Bytes held from a [`ResourceBudget`]; given back on drop.
#[derive(Debug)]
pub struct MemoryGrant<'a> {
    budget: &'a ResourceBudget,
    bytes: u64,
}

impl Drop for MemoryGrant<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.budget.release_memory(self.bytes) {
            // Cannot happen: the grant holds exactly these bytes. Logged, never thrown away.
            tracing::error!(target: "aegis_context", error = %e, "memory grant release failed");
        }
    }
}

/// Streams held from a [`ResourceBudget`]; given back on drop.
#[derive(Debug)]
pub struct StreamGrant<'a> {
    budget: &'a ResourceBudget,
    n: usize,
}

impl Drop for StreamGrant<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.budget.release_streams(self.n) {
            tracing::error!(target: "aegis_context", error = %e, "stream grant release failed");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused() {
        assert!(matches!(
            ResourceBudget::new(BudgetLimits::new(0, 1)),
            Err(ContextError::ZeroBudget {
                resource: Resource::Memory
            })
        ));
        assert!(matches!(
            ResourceBudget::new(BudgetLimits::new(1, 0)),
            Err(ContextError::ZeroBudget {
                resource: Resource::Streams
            })
        ));
    }

    #[test]
    fn allocate_and_release_account_exactly() {
        let b = ResourceBudget::new(BudgetLimits::new(100, 2)).unwrap();
        assert!(b.can_allocate(100));
        assert!(!b.can_allocate(101));
        b.allocate_memory(60).unwrap();
        let err = b.allocate_memory(41).unwrap_err();
        assert!(matches!(
            err,
            ContextError::BudgetExceeded {
                resource: Resource::Memory,
                requested: 41,
                available: 40,
                limit: 100
            }
        ));
        b.allocate_memory(40).unwrap();
        assert_eq!(b.memory_used(), 100);
        assert_eq!(b.memory_peak(), 100);
        b.release_memory(100).unwrap();
        assert_eq!(b.memory_used(), 0);
        assert_eq!(b.memory_peak(), 100);
    }

    #[test]
    fn release_underflow_is_detected_and_harmless() {
        let b = ResourceBudget::new(BudgetLimits::new(100, 2)).unwrap();
        b.allocate_memory(10).unwrap();
        let err = b.release_memory(11).unwrap_err();
        assert!(matches!(
            err,
            ContextError::ReleaseUnderflow {
                released: 11,
                in_use: 10,
                ..
            }
        ));
        assert_eq!(b.memory_used(), 10);
        assert!(b.release_streams(1).is_err());
    }

    #[test]
    fn overflowing_request_is_refused_not_wrapped() {
        let b = ResourceBudget::new(BudgetLimits::new(u64::MAX, 1)).unwrap();
        b.allocate_memory(10).unwrap();
        assert!(b.allocate_memory(u64::MAX).is_err());
        assert_eq!(b.memory_used(), 10);
    }

    #[test]
    fn streams_and_guards() {
        let b = ResourceBudget::new(BudgetLimits::new(10, 2)).unwrap();
        {
            let _g = b.stream_guard(2).unwrap();
            assert!(!b.can_acquire_stream());
            assert!(b.stream_guard(1).is_err());
            let _m = b.memory_guard(10).unwrap();
            assert_eq!(b.memory_available(), 0);
        }
        assert_eq!(b.streams_used(), 0);
        assert_eq!(b.memory_used(), 0);
        assert_eq!(b.streams_peak(), 2);
    }
}
