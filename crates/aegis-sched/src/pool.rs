//! A fixed set of streams, created once, handed out deterministically.

use aegis_cuda::{Device, Stream, StreamPriority};

use crate::error::SchedError;
use crate::primitives::SlotSet;

/// Which free stream a request prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamPreference {
    /// Urgent work: the free stream with the highest stream priority (lowest CUDA number).
    Urgent,
    /// Everything else: the free stream with the lowest stream priority, keeping the
    /// high-priority streams free for urgent work.
    Normal,
}

/// A fixed set of streams with deterministic allocation: the same acquire/release sequence
/// always yields the same stream indices. Ties between equal priorities go to the lowest
/// index, so a pool of equal-priority streams hands out the lowest free index.
///
/// Acquire and release are lock-free and may be called from any thread.
pub struct StreamPool {
    device: Device,
    streams: Vec<Stream>,
    priorities: Vec<StreamPriority>,
    free: SlotSet,
    urgent_order: Vec<usize>,
    normal_order: Vec<usize>,
}

impl std::fmt::Debug for StreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPool")
            .field("streams", &self.streams)
            .field("free", &self.free.free_count())
            .finish()
    }
}

impl StreamPool {
    /// Creates `n` streams on `device`. `priorities` is empty (all normal), one value (for
    /// all) or `n` values (one per stream index). `n` is 1..=64.
    pub fn new(
        device: &Device,
        n: usize,
        priorities: &[StreamPriority],
    ) -> Result<Self, SchedError> {
        if n == 0 || n > SlotSet::MAX {
            return Err(SchedError::InvalidConfig {
                field: "StreamPool::n",
                value: n.to_string(),
                reason: "a pool has 1 to 64 streams",
            });
        }
        let priorities: Vec<StreamPriority> = match priorities.len() {
            0 => vec![StreamPriority::NORMAL; n],
            1 => vec![priorities[0]; n],
            len if len == n => priorities.to_vec(),
            len => {
                return Err(SchedError::InvalidConfig {
                    field: "StreamPool::priorities",
                    value: format!("{len} values"),
                    reason: "give none, one for all streams, or one per stream",
                })
            }
        };
        let streams = priorities
            .iter()
            .map(|p| Stream::new(device, *p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut urgent_order: Vec<usize> = (0..n).collect();
        // Lower CUDA number = higher priority; stable sort keeps index order within a priority.
        urgent_order.sort_by_key(|&i| priorities[i]);
        let mut normal_order: Vec<usize> = (0..n).collect();
        normal_order.sort_by_key(|&i| std::cmp::Reverse(priorities[i]));
        Ok(Self {
            device: device.clone(),
            streams,
            priorities,
            free: SlotSet::new(n),
            urgent_order,
            normal_order,
        })
    }

    /// The device the streams run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Always false: a pool has at least one stream.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Streams free right now.
    pub fn free_count(&self) -> usize {
        self.free.free_count()
    }

    /// The stream at `index`.
    pub fn stream(&self, index: usize) -> Option<&Stream> {
        self.streams.get(index)
    }

    /// The priority of the stream at `index`.
    pub fn priority(&self, index: usize) -> Option<StreamPriority> {
        self.priorities.get(index).copied()
    }

    /// True when the pool has streams of more than one priority.
    pub fn has_priorities(&self) -> bool {
        self.priorities.windows(2).any(|w| w[0] != w[1])
    }

    /// Takes a free stream according to `pref`; `None` when all are busy.
    pub fn try_acquire(&self, pref: StreamPreference) -> Option<usize> {
        match pref {
            StreamPreference::Urgent => self.free.try_acquire_in(&self.urgent_order),
            StreamPreference::Normal => self.free.try_acquire_in(&self.normal_order),
        }
    }

    /// Returns a stream. False if it was not held (a caller bug; nothing changes).
    pub fn release(&self, index: usize) -> bool {
        self.free.release(index)
    }
}
