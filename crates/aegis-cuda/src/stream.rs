//! Streams and events: the backend-neutral API over the host queues (and CUDA streams).

use std::fmt;
use std::time::Duration;

use crate::device::{Device, DeviceRepr};
use crate::error::{CallSite, CudaError, Result};
use crate::host::{HostEvent, HostStream, Label};
use crate::memory::DeviceSlice;
use crate::sync::Arc;

/// Stream priority: lower numbers are higher priority (CUDA's convention). The host backend
/// records it; its workers are ordinary threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamPriority(pub i32);

impl StreamPriority {
    /// The default priority.
    pub const NORMAL: Self = Self(0);
    /// The highest priority CUDA offers on current GPUs.
    pub const HIGH: Self = Self(-5);
}

/// An in-order queue of work on a device. Dropping it waits for its pending work (drain).
pub struct Stream {
    inner: HostStream,
    device: Device,
    priority: StreamPriority,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("priority", &self.priority)
            .finish()
    }
}

impl Stream {
    /// Creates a stream on `device`.
    #[track_caller]
    pub fn new(device: &Device, priority: StreamPriority) -> Result<Self> {
        let DeviceRepr::Host(h) = &device.repr;
        Ok(Self {
            inner: HostStream::new(Arc::clone(h))?,
            device: device.clone(),
            priority,
        })
    }

    /// Device-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// The priority it was created with.
    pub fn priority(&self) -> StreamPriority {
        self.priority
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Items enqueued and not yet finished.
    pub fn pending(&self) -> u64 {
        self.inner.pending()
    }

    fn check_slice(&self, call: &'static str, s: &DeviceSlice, site: CallSite) -> Result<()> {
        if Arc::ptr_eq(s.owner(), self.inner.device()) {
            Ok(())
        } else {
            Err(CudaError::InvalidArgument {
                call,
                site,
                reason: "memory belongs to another device".into(),
            })
        }
    }

    /// Enqueues host work (host backend only): returns at once; the closure runs on the
    /// stream's worker after everything enqueued before it. Its error, or a panic, is reported
    /// at the next [`Stream::synchronize`].
    #[track_caller]
    pub fn enqueue_host(
        &self,
        label: impl Into<Label>,
        f: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.inner.enqueue(label.into(), Box::new(f))
    }

    /// Enqueues a fill of `dst` with `byte`.
    #[track_caller]
    pub fn memset(&self, dst: &DeviceSlice, byte: u8) -> Result<()> {
        self.check_slice("Stream::memset", dst, CallSite::here())?;
        let dst = dst.clone();
        self.inner.enqueue(
            Label::Borrowed("memset"),
            Box::new(move || {
                dst.host_write("memset")?.fill(byte);
                Ok(())
            }),
        )
    }

    /// Enqueues a copy between two equally long ranges (device↔device, or to/from a
    /// [`crate::HostBuffer`]).
    #[track_caller]
    pub fn copy(&self, src: &DeviceSlice, dst: &DeviceSlice) -> Result<()> {
        let site = CallSite::here();
        self.check_slice("Stream::copy", src, site)?;
        self.check_slice("Stream::copy", dst, site)?;
        if src.len() != dst.len() {
            return Err(CudaError::InvalidArgument {
                call: "Stream::copy",
                site,
                reason: format!("source has {} bytes, destination {}", src.len(), dst.len()),
            });
        }
        if src.overlaps(dst) {
            return Err(CudaError::InvalidArgument {
                call: "Stream::copy",
                site,
                reason: "ranges overlap".into(),
            });
        }
        let (src, dst) = (src.clone(), dst.clone());
        self.inner.enqueue(
            Label::Borrowed("memcpy"),
            Box::new(move || {
                let s = src.host_read("memcpy")?;
                dst.host_write("memcpy")?.copy_from_slice(&s);
                Ok(())
            }),
        )
    }

    /// Enqueues an upload of owned host bytes into `dst` (the bytes move into the stream, so
    /// the caller cannot change them while the copy is pending).
    #[track_caller]
    pub fn upload(&self, data: impl AsRef<[u8]> + Send + 'static, dst: &DeviceSlice) -> Result<()> {
        let site = CallSite::here();
        self.check_slice("Stream::upload", dst, site)?;
        if data.as_ref().len() != dst.len() {
            return Err(CudaError::InvalidArgument {
                call: "Stream::upload",
                site,
                reason: format!(
                    "source has {} bytes, destination {}",
                    data.as_ref().len(),
                    dst.len()
                ),
            });
        }
        let dst = dst.clone();
        self.inner.enqueue(
            Label::Borrowed("memcpyHtoD"),
            Box::new(move || {
                dst.host_write("memcpyHtoD")?.copy_from_slice(data.as_ref());
                Ok(())
            }),
        )
    }

    /// Records `event` at this point of the stream.
    #[track_caller]
    pub fn record(&self, event: &Event) -> Result<()> {
        self.check_event("Stream::record", event, CallSite::here())?;
        self.inner.record(&event.inner)
    }

    /// Makes later work on this stream wait until `event`'s latest record point (at the time
    /// of this call) has been passed. An event never recorded does not block.
    #[track_caller]
    pub fn wait_event(&self, event: &Event) -> Result<()> {
        self.check_event("Stream::wait_event", event, CallSite::here())?;
        self.inner.wait_event(&event.inner)
    }

    fn check_event(&self, call: &'static str, e: &Event, site: CallSite) -> Result<()> {
        if Arc::ptr_eq(&e.inner.device, self.inner.device()) {
            Ok(())
        } else {
            Err(CudaError::InvalidArgument {
                call,
                site,
                reason: format!("event {} belongs to another device", e.inner.id),
            })
        }
    }

    /// Blocks until all work enqueued so far has run; returns the first error raised by that
    /// work since the previous synchronise (and clears it), or the device's poison.
    #[track_caller]
    pub fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }
}

/// A marker in a stream that other streams and the host can wait on.
#[derive(Clone)]
pub struct Event {
    inner: Arc<HostEvent>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("id", &self.inner.id).finish()
    }
}

impl Event {
    /// Creates an event on `device` (timing enabled).
    #[track_caller]
    pub fn new(device: &Device) -> Result<Self> {
        let DeviceRepr::Host(h) = &device.repr;
        h.check_alive("Event::new")?;
        Ok(Self {
            inner: Arc::new(HostEvent::new(Arc::clone(h))),
        })
    }

    /// Device-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Blocks the caller until the latest record point has been passed.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    /// True when the latest record point has been passed (never blocks).
    pub fn query(&self) -> bool {
        self.inner.query()
    }

    /// Time between `start`'s and this event's completion. Both must be complete.
    #[track_caller]
    pub fn elapsed_since(&self, start: &Event) -> Result<Duration> {
        let site = CallSite::here();
        match (start.inner.completed_at(), self.inner.completed_at()) {
            (Some(a), Some(b)) => Ok(b.saturating_duration_since(a)),
            _ => Err(CudaError::NotReady {
                call: "Event::elapsed_since",
                site,
            }),
        }
    }
}
