//! Streams and events: the backend-neutral API over the host queues and CUDA streams.

use std::fmt;
use std::time::Duration;

use crate::device::{Device, DeviceRepr};
use crate::error::{CallSite, CudaError, Result};
use crate::host::{HostEvent, HostStream, Label};
use crate::memory::DeviceSlice;
use crate::sync::Arc;

/// Stream priority: lower numbers are higher priority (CUDA's convention). The host backend
/// records it; its workers are ordinary threads. CUDA clamps it into the device's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamPriority(pub i32);

impl StreamPriority {
    /// The default priority.
    pub const NORMAL: Self = Self(0);
    /// The highest priority CUDA offers on current GPUs.
    pub const HIGH: Self = Self(-5);
}

pub(crate) enum StreamRepr {
    Host(HostStream),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaStream),
}

/// An in-order queue of work on a device. Dropping it waits for its pending work (drain).
pub struct Stream {
    pub(crate) repr: StreamRepr,
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

#[cfg(feature = "cuda")]
#[track_caller]
fn wrong_backend(call: &'static str) -> CudaError {
    CudaError::WrongBackend {
        call,
        site: CallSite::here(),
        backend: "cuda",
    }
}

impl Stream {
    /// Creates a stream on `device`.
    #[track_caller]
    pub fn new(device: &Device, priority: StreamPriority) -> Result<Self> {
        let repr = match &device.repr {
            DeviceRepr::Host(h) => StreamRepr::Host(HostStream::new(Arc::clone(h))?),
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => StreamRepr::Cuda(crate::cuda::CudaStream::new(
                c,
                priority.0,
                CallSite::here(),
            )?),
        };
        Ok(Self {
            repr,
            device: device.clone(),
            priority,
        })
    }

    /// Device-unique id.
    pub fn id(&self) -> u64 {
        match &self.repr {
            StreamRepr::Host(h) => h.id(),
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.id(),
        }
    }

    /// The priority it was created with.
    pub fn priority(&self) -> StreamPriority {
        self.priority
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Items enqueued and not yet finished (CUDA: items since the stream was last seen idle).
    pub fn pending(&self) -> u64 {
        match &self.repr {
            StreamRepr::Host(h) => h.pending(),
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.pending(),
        }
    }

    fn check_slice(&self, call: &'static str, s: &DeviceSlice, site: CallSite) -> Result<()> {
        if s.owner().same(&self.device.repr) {
            Ok(())
        } else {
            Err(CudaError::InvalidArgument {
                call,
                site,
                reason: "memory belongs to another device".into(),
            })
        }
    }

    /// Enqueues host work (host backend only; [`CudaError::WrongBackend`] on CUDA, where
    /// arbitrary host work cannot run in stream order — use [`Stream::callback`] for
    /// notifications): returns at once; the closure runs on the stream's worker after
    /// everything enqueued before it. Its error, or a panic, is reported at the next
    /// [`Stream::synchronize`].
    #[track_caller]
    pub fn enqueue_host(
        &self,
        label: impl Into<Label>,
        f: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        match &self.repr {
            StreamRepr::Host(h) => h.enqueue(label.into(), Box::new(f)),
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(_) => {
                drop(f);
                Err(wrong_backend("Stream::enqueue_host"))
            }
        }
    }

    /// Enqueues a notification: `f` runs on a host thread once everything enqueued before it
    /// has completed. Both backends. On the host backend it runs in stream order (later work
    /// waits for it); on CUDA it is posted from a `cuLaunchHostFunc` callback to the device's
    /// callback thread, so later work does not wait for it and `f` may itself use the API.
    /// A panic in `f` is reported at the next [`Stream::synchronize`].
    #[track_caller]
    pub fn callback(
        &self,
        label: impl Into<Label>,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        match &self.repr {
            StreamRepr::Host(h) => h.enqueue(
                label.into(),
                Box::new(move || {
                    f();
                    Ok(())
                }),
            ),
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.callback(label.into(), Box::new(f), CallSite::here()),
        }
    }

    /// Enqueues a fill of `dst` with `byte`.
    #[track_caller]
    pub fn memset(&self, dst: &DeviceSlice, byte: u8) -> Result<()> {
        let site = CallSite::here();
        self.check_slice("Stream::memset", dst, site)?;
        match &self.repr {
            StreamRepr::Host(h) => {
                let dst = dst.clone();
                h.enqueue(
                    Label::Borrowed("memset"),
                    Box::new(move || {
                        dst.host_write("memset")?.fill(byte);
                        Ok(())
                    }),
                )
            }
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.memset(dst, byte, site),
        }
    }

    /// Enqueues a copy between two equally long ranges (device↔device, or to/from a
    /// [`crate::HostBuffer`]).
    #[track_caller]
    pub fn copy(&self, src: &DeviceSlice, dst: &DeviceSlice) -> Result<()> {
        let site = CallSite::here();
        self.check_copy("Stream::copy", src, dst, site)?;
        match &self.repr {
            StreamRepr::Host(h) => {
                let (src, dst) = (src.clone(), dst.clone());
                h.enqueue(
                    Label::Borrowed("memcpy"),
                    Box::new(move || {
                        let s = src.host_read("memcpy")?;
                        dst.host_write("memcpy")?.copy_from_slice(&s);
                        Ok(())
                    }),
                )
            }
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.copy(src, dst, site),
        }
    }

    fn check_copy(
        &self,
        call: &'static str,
        src: &DeviceSlice,
        dst: &DeviceSlice,
        site: CallSite,
    ) -> Result<()> {
        self.check_slice(call, src, site)?;
        self.check_slice(call, dst, site)?;
        if src.len() != dst.len() {
            return Err(CudaError::InvalidArgument {
                call,
                site,
                reason: format!("source has {} bytes, destination {}", src.len(), dst.len()),
            });
        }
        if src.overlaps(dst) {
            return Err(CudaError::InvalidArgument {
                call,
                site,
                reason: "ranges overlap".into(),
            });
        }
        Ok(())
    }

    /// Enqueues a copy from device memory into host staging memory (a [`crate::HostBuffer`]
    /// slice), readable with [`crate::HostBuffer::read`] after a synchronise. Both backends.
    #[track_caller]
    pub fn download(&self, src: &DeviceSlice, dst: &DeviceSlice) -> Result<()> {
        let site = CallSite::here();
        if !dst.is_host_accessible() {
            return Err(CudaError::InvalidArgument {
                call: "Stream::download",
                site,
                reason: "destination is not host memory (use a HostBuffer slice)".into(),
            });
        }
        self.check_copy("Stream::download", src, dst, site)?;
        match &self.repr {
            StreamRepr::Host(h) => {
                let (src, dst) = (src.clone(), dst.clone());
                h.enqueue(
                    Label::Borrowed("memcpyDtoH"),
                    Box::new(move || {
                        let s = src.host_read("memcpyDtoH")?;
                        dst.host_write("memcpyDtoH")?.copy_from_slice(&s);
                        Ok(())
                    }),
                )
            }
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.copy(src, dst, site),
        }
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
        match &self.repr {
            StreamRepr::Host(h) => {
                let dst = dst.clone();
                h.enqueue(
                    Label::Borrowed("memcpyHtoD"),
                    Box::new(move || {
                        dst.host_write("memcpyHtoD")?.copy_from_slice(data.as_ref());
                        Ok(())
                    }),
                )
            }
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.upload(Box::new(data), dst, site),
        }
    }

    /// Records `event` at this point of the stream.
    #[track_caller]
    pub fn record(&self, event: &Event) -> Result<()> {
        let site = CallSite::here();
        match (&self.repr, &event.repr) {
            (StreamRepr::Host(h), EventRepr::Host(e)) => {
                self.check_host_event("Stream::record", h, e, site)?;
                h.record(e)
            }
            #[cfg(feature = "cuda")]
            (StreamRepr::Cuda(s), EventRepr::Cuda(e)) => s.record(e, site),
            #[cfg(feature = "cuda")]
            _ => Err(other_device("Stream::record", event, site)),
        }
    }

    /// Makes later work on this stream wait until `event`'s latest record point (at the time
    /// of this call) has been passed. An event never recorded does not block.
    #[track_caller]
    pub fn wait_event(&self, event: &Event) -> Result<()> {
        let site = CallSite::here();
        match (&self.repr, &event.repr) {
            (StreamRepr::Host(h), EventRepr::Host(e)) => {
                self.check_host_event("Stream::wait_event", h, e, site)?;
                h.wait_event(e)
            }
            #[cfg(feature = "cuda")]
            (StreamRepr::Cuda(s), EventRepr::Cuda(e)) => s.wait_event(e, site),
            #[cfg(feature = "cuda")]
            _ => Err(other_device("Stream::wait_event", event, site)),
        }
    }

    fn check_host_event(
        &self,
        call: &'static str,
        s: &HostStream,
        e: &Arc<HostEvent>,
        site: CallSite,
    ) -> Result<()> {
        if Arc::ptr_eq(&e.device, s.device()) {
            Ok(())
        } else {
            Err(CudaError::InvalidArgument {
                call,
                site,
                reason: format!("event {} belongs to another device", e.id),
            })
        }
    }

    /// Blocks until all work enqueued so far has run; returns the first error raised by that
    /// work since the previous synchronise (and clears it), or the device's poison.
    #[track_caller]
    pub fn synchronize(&self) -> Result<()> {
        match &self.repr {
            StreamRepr::Host(h) => h.synchronize(),
            #[cfg(feature = "cuda")]
            StreamRepr::Cuda(c) => c.synchronize(CallSite::here()),
        }
    }
}

/// Kernels and graphs: CUDA streams only ([`CudaError::WrongBackend`] on the host backend).
#[cfg(feature = "cuda")]
impl Stream {
    fn cuda(&self, call: &'static str) -> Result<&crate::cuda::CudaStream> {
        match &self.repr {
            StreamRepr::Cuda(c) => Ok(c),
            StreamRepr::Host(_) => Err(CudaError::WrongBackend {
                call,
                site: CallSite::here(),
                backend: "host",
            }),
        }
    }

    /// Enqueues a launch of `kernel` with `grid` blocks of `block` threads and
    /// `shared_mem_bytes` of dynamic shared memory. `args` are checked against the kernel's
    /// PTX signature; the slices they name stay alive until the launch has run.
    #[track_caller]
    pub fn launch(
        &self,
        kernel: &crate::Kernel,
        grid: impl Into<crate::Dim3>,
        block: impl Into<crate::Dim3>,
        shared_mem_bytes: u32,
        args: &crate::KernelArgs,
    ) -> Result<()> {
        let site = CallSite::here();
        self.cuda("Stream::launch")?.launch(
            kernel,
            grid.into(),
            block.into(),
            shared_mem_bytes,
            args,
            site,
        )
    }

    /// Starts capturing this stream's work into a graph instead of running it (no allocation
    /// and no synchronise until [`Stream::end_capture`]).
    #[track_caller]
    pub fn begin_capture(&self) -> Result<()> {
        let site = CallSite::here();
        self.cuda("Stream::begin_capture")?.begin_capture(site)
    }

    /// Ends the capture started by [`Stream::begin_capture`], returning the graph.
    #[track_caller]
    pub fn end_capture(&self) -> Result<crate::CapturedGraph> {
        let site = CallSite::here();
        self.cuda("Stream::end_capture")?.end_capture(site)
    }

    /// Enqueues one replay of an instantiated graph.
    #[track_caller]
    pub fn launch_graph(&self, graph: &crate::GraphExec) -> Result<()> {
        let site = CallSite::here();
        self.cuda("Stream::launch_graph")?.launch_graph(graph, site)
    }
}

#[cfg(feature = "cuda")]
fn other_device(call: &'static str, event: &Event, site: CallSite) -> CudaError {
    CudaError::InvalidArgument {
        call,
        site,
        reason: format!("event {} belongs to another device", event.id()),
    }
}

pub(crate) enum EventRepr {
    Host(Arc<HostEvent>),
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::cuda::CudaEvent>),
}

impl Clone for EventRepr {
    fn clone(&self) -> Self {
        match self {
            Self::Host(h) => Self::Host(Arc::clone(h)),
            #[cfg(feature = "cuda")]
            Self::Cuda(c) => Self::Cuda(Arc::clone(c)),
        }
    }
}

/// A marker in a stream that other streams and the host can wait on.
#[derive(Clone)]
pub struct Event {
    pub(crate) repr: EventRepr,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("id", &self.id()).finish()
    }
}

impl Event {
    /// Creates an event on `device` (timing enabled).
    #[track_caller]
    pub fn new(device: &Device) -> Result<Self> {
        let repr = match &device.repr {
            DeviceRepr::Host(h) => {
                h.check_alive("Event::new")?;
                EventRepr::Host(Arc::new(HostEvent::new(Arc::clone(h))))
            }
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => {
                EventRepr::Cuda(Arc::new(crate::cuda::CudaEvent::new(c, CallSite::here())?))
            }
        };
        Ok(Self { repr })
    }

    /// Device-unique id.
    pub fn id(&self) -> u64 {
        match &self.repr {
            EventRepr::Host(h) => h.id,
            #[cfg(feature = "cuda")]
            EventRepr::Cuda(c) => c.id(),
        }
    }

    /// Blocks the caller until the latest record point has been passed.
    #[track_caller]
    pub fn synchronize(&self) -> Result<()> {
        match &self.repr {
            EventRepr::Host(h) => h.synchronize(),
            #[cfg(feature = "cuda")]
            EventRepr::Cuda(c) => c.synchronize(CallSite::here()),
        }
    }

    /// True when the latest record point has been passed (never blocks). On CUDA a driver
    /// error also answers `true` (so no poller spins forever) and is surfaced by the device's
    /// next fallible call.
    #[track_caller]
    pub fn query(&self) -> bool {
        match &self.repr {
            EventRepr::Host(h) => h.query(),
            #[cfg(feature = "cuda")]
            EventRepr::Cuda(c) => c.query(CallSite::here()),
        }
    }

    /// Time between `start`'s and this event's completion. Both must be complete
    /// ([`CudaError::NotReady`] otherwise).
    #[track_caller]
    pub fn elapsed_since(&self, start: &Event) -> Result<Duration> {
        let site = CallSite::here();
        match (&start.repr, &self.repr) {
            (EventRepr::Host(a), EventRepr::Host(b)) => {
                match (a.completed_at(), b.completed_at()) {
                    (Some(a), Some(b)) => Ok(b.saturating_duration_since(a)),
                    _ => Err(CudaError::NotReady {
                        call: "Event::elapsed_since",
                        site,
                    }),
                }
            }
            #[cfg(feature = "cuda")]
            (EventRepr::Cuda(a), EventRepr::Cuda(b)) => b.elapsed_since(a, site),
            #[cfg(feature = "cuda")]
            _ => Err(other_device("Event::elapsed_since", start, site)),
        }
    }
}
