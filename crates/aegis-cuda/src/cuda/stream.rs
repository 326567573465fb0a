//! CUDA streams (with keep-alive lists), events and captured graphs.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use super::device::{CallbackJob, CudaDevice};
use super::module::{Dim3, Kernel, KernelArgs};
use crate::error::{CallSite, CudaError, Result};
use crate::host::Label;
use crate::memory::DeviceSlice;
use crate::raw::cuda as raw;
use crate::sync::{lock, Arc, Mutex};

/// Something an enqueued operation uses, parked until the stream has passed the operation.
pub(crate) type Keep = Box<dyn Any + Send>;

/// Past this many parked items an enqueue asks the driver whether the stream is idle and, if
/// so, releases them, bounding what a never-synchronised stream holds on to.
const TRIM_AT: usize = 1024;

#[derive(Default)]
struct State {
    keep: Vec<Keep>,
    /// Operations since the stream was last seen idle.
    enqueued: u64,
    /// While capturing: where in `keep` the captured operations' items start (they move into
    /// the graph, which replays them).
    capture_from: Option<usize>,
}

pub(crate) struct CudaStream {
    raw: raw::RawStream,
    id: u64,
    dev: Arc<CudaDevice>,
    state: Mutex<State>,
    /// First panic of a callback posted by this stream, reported at the next synchronise.
    errors: Arc<Mutex<Option<CudaError>>>,
}

#[track_caller]
fn wrong_backend(call: &'static str) -> CudaError {
    CudaError::WrongBackend {
        call,
        site: CallSite::here(),
        backend: "host",
    }
}

impl CudaStream {
    pub(crate) fn new(dev: &Arc<CudaDevice>, priority: i32, site: CallSite) -> Result<Self> {
        dev.enter("Stream::new", site)?;
        let raw = dev.observe(raw::stream_create(dev.clamp_priority(priority), site))?;
        Ok(Self {
            raw,
            id: dev.fresh_id(),
            dev: Arc::clone(dev),
            state: Mutex::new(State::default()),
            errors: Arc::new(Mutex::new(None)),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn pending(&self) -> u64 {
        let mut st = lock(&self.state);
        if st.enqueued == 0 || st.capture_from.is_some() {
            return st.enqueued;
        }
        match raw::stream_query(self.raw, CallSite::here()) {
            Ok(true) => {
                st.keep.clear();
                st.enqueued = 0;
                0
            }
            Ok(false) => st.enqueued,
            Err(e) => {
                self.dev.defer(e);
                st.enqueued
            }
        }
    }

    /// The one path every enqueue takes: device checks, the driver call, then the items it
    /// uses are parked.
    fn op(
        &self,
        call: &'static str,
        site: CallSite,
        keep: Vec<Keep>,
        f: impl FnOnce(raw::RawStream) -> Result<()>,
    ) -> Result<()> {
        self.dev.enter(call, site)?;
        self.dev.observe(f(self.raw))?;
        let mut st = lock(&self.state);
        st.keep.extend(keep);
        st.enqueued += 1;
        if st.keep.len() >= TRIM_AT && st.capture_from.is_none() {
            if let Ok(true) = raw::stream_query(self.raw, site) {
                st.keep.clear();
                st.enqueued = 0;
            }
        }
        Ok(())
    }

    fn check_mine(&self, call: &'static str, s: &DeviceSlice, site: CallSite) -> Result<()> {
        match s.owner() {
            crate::device::DeviceRepr::Cuda(d) if Arc::ptr_eq(d, &self.dev) => Ok(()),
            _ => Err(CudaError::InvalidArgument {
                call,
                site,
                reason: "memory belongs to another device".into(),
            }),
        }
    }

    pub(crate) fn callback(
        &self,
        label: Label,
        f: Box<dyn FnOnce() + Send + 'static>,
        site: CallSite,
    ) -> Result<()> {
        let tx = self.dev.callback_sender(site)?;
        let job = CallbackJob {
            label,
            stream: self.id,
            f,
            errors: Arc::clone(&self.errors),
        };
        self.op("Stream::callback", site, Vec::new(), move |s| {
            // The driver's callback thread only forwards the job: it must not call CUDA, and
            // the job's captures are then dropped on the callback thread, not the driver's.
            raw::launch_host_func(
                s,
                Box::new(move || {
                    let _ = tx.send(job);
                }),
                site,
            )
        })
    }

    pub(crate) fn memset(&self, dst: &DeviceSlice, byte: u8, site: CallSite) -> Result<()> {
        let Some(ptr) = dst.device_ptr() else {
            return Err(wrong_backend("Stream::memset"));
        };
        if dst.is_empty() {
            return Ok(());
        }
        let len = dst.len();
        self.op("Stream::memset", site, vec![Box::new(dst.clone())], |s| {
            raw::memset_d8_async(ptr, byte, len, s, site)
        })
    }

    /// Device↔device, host→device or device→host, by where each side lives.
    pub(crate) fn copy(&self, src: &DeviceSlice, dst: &DeviceSlice, site: CallSite) -> Result<()> {
        let len = src.len();
        if len == 0 {
            return Ok(());
        }
        let keep: Vec<Keep> = vec![Box::new(src.clone()), Box::new(dst.clone())];
        match (src.device_ptr(), dst.device_ptr()) {
            (Some(s_ptr), Some(d_ptr)) => self.op("Stream::copy", site, keep, |s| {
                raw::memcpy_dtod_async(d_ptr, s_ptr, len, s, site)
            }),
            (None, Some(d_ptr)) => {
                // Fails with RaceDetected if the host holds a write guard on the source now.
                drop(src.host_read("memcpyHtoD")?);
                let h = src
                    .host_ptr()
                    .ok_or_else(|| wrong_backend("Stream::copy"))?;
                self.op("Stream::copy", site, keep, |s| {
                    raw::memcpy_htod_async(d_ptr, h, len, s, site)
                })
            }
            (Some(s_ptr), None) => {
                // Fails with RaceDetected if the host holds any guard on the destination now.
                drop(dst.host_write("memcpyDtoH")?);
                let h = dst
                    .host_ptr()
                    .ok_or_else(|| wrong_backend("Stream::copy"))?;
                self.op("Stream::copy", site, keep, |s| {
                    raw::memcpy_dtoh_async(h, s_ptr, len, s, site)
                })
            }
            (None, None) => Err(CudaError::InvalidArgument {
                call: "Stream::copy",
                site,
                reason: "host-to-host copy on a CUDA stream; copy on the host instead".into(),
            }),
        }
    }

    pub(crate) fn upload(
        &self,
        data: Box<dyn AsRef<[u8]> + Send>,
        dst: &DeviceSlice,
        site: CallSite,
    ) -> Result<()> {
        let Some(d_ptr) = dst.device_ptr() else {
            // Staging memory is written from the host directly.
            return Err(wrong_backend("Stream::upload"));
        };
        let bytes = (*data).as_ref();
        let (h, len) = (bytes.as_ptr(), bytes.len());
        if len == 0 {
            return Ok(());
        }
        // `data` is boxed, so `h` stays valid while the box is parked in the keep list.
        let keep: Vec<Keep> = vec![Box::new(data), Box::new(dst.clone())];
        self.op("Stream::upload", site, keep, |s| {
            raw::memcpy_htod_async(d_ptr, h, len, s, site)
        })
    }

    pub(crate) fn record(&self, e: &Arc<CudaEvent>, site: CallSite) -> Result<()> {
        self.check_event("Stream::record", e, site)?;
        self.op("Stream::record", site, Vec::new(), |s| {
            raw::event_record(e.raw, s, site)
        })
    }

    pub(crate) fn wait_event(&self, e: &Arc<CudaEvent>, site: CallSite) -> Result<()> {
        self.check_event("Stream::wait_event", e, site)?;
        self.op("Stream::wait_event", site, Vec::new(), |s| {
            raw::stream_wait_event(s, e.raw, site)
        })
    }

    fn check_event(&self, call: &'static str, e: &CudaEvent, site: CallSite) -> Result<()> {
        if Arc::ptr_eq(&e.dev, &self.dev) {
            Ok(())
        } else {
            Err(CudaError::InvalidArgument {
                call,
                site,
                reason: format!("event {} belongs to another device", e.id),
            })
        }
    }

    pub(crate) fn launch(
        &self,
        kernel: &Kernel,
        grid: Dim3,
        block: Dim3,
        shared_mem_bytes: u32,
        args: &KernelArgs,
        site: CallSite,
    ) -> Result<()> {
        if !Arc::ptr_eq(kernel.device(), &self.dev) {
            return Err(CudaError::InvalidArgument {
                call: "Stream::launch",
                site,
                reason: format!("kernel `{}` was loaded on another device", kernel.name()),
            });
        }
        for s in args.slices() {
            self.check_mine("Stream::launch", s, site)?;
        }
        let slots = args.slots_for(kernel, site)?;
        let (g, b) = (grid.checked("grid", site)?, block.checked("block", site)?);
        let mut keep: Vec<Keep> = args.slices().map(|s| Box::new(s.clone()) as Keep).collect();
        keep.push(Box::new(kernel.clone()));
        self.op("Stream::launch", site, keep, |s| {
            raw::launch_kernel(kernel.raw(), g, b, shared_mem_bytes, s, &slots, site)
        })
    }

    pub(crate) fn synchronize(&self, site: CallSite) -> Result<()> {
        self.dev.enter("Stream::synchronize", site)?;
        if lock(&self.state).capture_from.is_some() {
            // Synchronising a capturing stream would invalidate the capture.
            return Err(CudaError::invalid(
                "Stream::synchronize",
                "the stream is capturing; end the capture first",
            ));
        }
        self.dev.observe(raw::stream_synchronize(self.raw, site))?;
        let released = {
            let mut st = lock(&self.state);
            st.enqueued = 0;
            std::mem::take(&mut st.keep)
        };
        // Freed outside the lock: dropping device memory calls the driver.
        drop(released);
        match lock(&self.errors).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(crate) fn begin_capture(&self, site: CallSite) -> Result<()> {
        self.dev.enter("Stream::begin_capture", site)?;
        let mut st = lock(&self.state);
        if st.capture_from.is_some() {
            return Err(CudaError::invalid(
                "Stream::begin_capture",
                "already capturing",
            ));
        }
        self.dev
            .observe(raw::stream_begin_capture(self.raw, site))?;
        st.capture_from = Some(st.keep.len());
        Ok(())
    }

    pub(crate) fn end_capture(&self, site: CallSite) -> Result<CapturedGraph> {
        self.dev.enter("Stream::end_capture", site)?;
        let mut st = lock(&self.state);
        let Some(from) = st.capture_from.take() else {
            return Err(CudaError::invalid("Stream::end_capture", "not capturing"));
        };
        // Captured operations did not run; their items belong to the graph either way.
        let captured: Vec<Keep> = st.keep.drain(from..).collect();
        drop(st);
        let graph = self.dev.observe(raw::stream_end_capture(self.raw, site))?;
        Ok(CapturedGraph {
            raw: graph,
            dev: Arc::clone(&self.dev),
            keep: Arc::new(Mutex::new(captured)),
        })
    }

    pub(crate) fn launch_graph(&self, exec: &GraphExec, site: CallSite) -> Result<()> {
        if !Arc::ptr_eq(&exec.inner.dev, &self.dev) {
            return Err(CudaError::InvalidArgument {
                call: "Stream::launch_graph",
                site,
                reason: "graph was instantiated on another device".into(),
            });
        }
        let keep: Vec<Keep> = vec![Box::new(Arc::clone(&exec.inner))];
        self.op("Stream::launch_graph", site, keep, |s| {
            raw::graph_launch(exec.inner.raw, s, site)
        })
    }
}

impl Drop for CudaStream {
    fn drop(&mut self) {
        let keep = std::mem::take(&mut lock(&self.state).keep);
        if self.dev.retired() {
            // The context reset destroyed the stream and stopped its work.
            return;
        }
        if self.dev.poison_cause().is_some() {
            // A sticky error: whether the device still touches these buffers is unknown, and
            // every driver call would fail. Leak them; `rebuild` reclaims the device side.
            std::mem::forget(keep);
            return;
        }
        let site = CallSite::here();
        // Drain, like a host stream: pending work finishes before its buffers are released.
        let drained =
            raw::bind(self.dev.ctx(), site).and_then(|()| raw::stream_synchronize(self.raw, site));
        match drained {
            Ok(()) => drop(keep),
            Err(e) => {
                // Whether the device still touches these buffers is unknown: leak them rather
                // than free memory a DMA engine may be writing.
                std::mem::forget(keep);
                self.dev.defer(e);
            }
        }
        let raw_stream = self.raw;
        self.dev
            .release(|| raw::stream_destroy(raw_stream, CallSite::here()));
        if let Some(e) = lock(&self.errors).take() {
            tracing::error!(target: "aegis_cuda", stream = self.id, error = %e, "error pending on dropped stream");
        }
    }
}

/// A CUDA event (timing enabled).
pub(crate) struct CudaEvent {
    raw: raw::RawEvent,
    id: u64,
    dev: Arc<CudaDevice>,
}

impl CudaEvent {
    pub(crate) fn new(dev: &Arc<CudaDevice>, site: CallSite) -> Result<Self> {
        dev.enter("Event::new", site)?;
        let raw = dev.observe(raw::event_create(site))?;
        Ok(Self {
            raw,
            id: dev.fresh_id(),
            dev: Arc::clone(dev),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn synchronize(&self, site: CallSite) -> Result<()> {
        self.dev.enter("Event::synchronize", site)?;
        self.dev.observe(raw::event_synchronize(self.raw, site))
    }

    pub(crate) fn query(&self, site: CallSite) -> bool {
        if self.dev.poison_cause().is_some() || self.dev.retired() {
            // Already reported by every fallible call: nothing to wait for any more.
            return true;
        }
        if let Err(e) = self.dev.bind(site) {
            self.dev.defer(e);
            return true;
        }
        match raw::event_query(self.raw, site) {
            Ok(done) => done,
            Err(e) => {
                self.dev.defer(e);
                true
            }
        }
    }

    pub(crate) fn elapsed_since(&self, start: &CudaEvent, site: CallSite) -> Result<Duration> {
        if !Arc::ptr_eq(&self.dev, &start.dev) {
            return Err(CudaError::InvalidArgument {
                call: "Event::elapsed_since",
                site,
                reason: "events belong to different devices".into(),
            });
        }
        self.dev.enter("Event::elapsed_since", site)?;
        match raw::event_elapsed_ms(start.raw, self.raw, site) {
            Ok(ms) => Ok(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1000.0)),
            Err(CudaError::Driver { code, .. }) if code == super::codes::NOT_READY as u32 => {
                Err(CudaError::NotReady {
                    call: "Event::elapsed_since",
                    site,
                })
            }
            Err(e) => Err(self.dev.fail(e)),
        }
    }
}

impl Drop for CudaEvent {
    fn drop(&mut self) {
        let e = self.raw;
        self.dev.release(|| raw::event_destroy(e, CallSite::here()));
    }
}

/// A graph captured from a stream ([`crate::Stream::end_capture`]). Instantiate it to replay
/// it. It keeps alive every buffer the captured work uses.
pub struct CapturedGraph {
    raw: raw::RawGraph,
    dev: Arc<CudaDevice>,
    keep: Arc<Mutex<Vec<Keep>>>,
}

impl fmt::Debug for CapturedGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapturedGraph")
            .field("buffers", &lock(&self.keep).len())
            .finish()
    }
}

impl CapturedGraph {
    /// Instantiates the graph for launching with [`crate::Stream::launch_graph`].
    #[track_caller]
    pub fn instantiate(&self) -> Result<GraphExec> {
        let site = CallSite::here();
        self.dev.enter("CapturedGraph::instantiate", site)?;
        let raw = self.dev.observe(raw::graph_instantiate(self.raw, site))?;
        Ok(GraphExec {
            inner: Arc::new(ExecInner {
                raw,
                dev: Arc::clone(&self.dev),
                _keep: Arc::clone(&self.keep),
            }),
        })
    }
}

impl Drop for CapturedGraph {
    fn drop(&mut self) {
        let g = self.raw;
        self.dev.release(|| raw::graph_destroy(g, CallSite::here()));
    }
}

pub(crate) struct ExecInner {
    raw: raw::RawGraphExec,
    dev: Arc<CudaDevice>,
    _keep: Arc<Mutex<Vec<Keep>>>,
}

impl Drop for ExecInner {
    fn drop(&mut self) {
        let e = self.raw;
        self.dev
            .release(|| raw::graph_exec_destroy(e, CallSite::here()));
    }
}

/// An instantiated graph: launch it any number of times with [`crate::Stream::launch_graph`].
/// Cheap to clone.
#[derive(Clone)]
pub struct GraphExec {
    inner: Arc<ExecInner>,
}

impl fmt::Debug for GraphExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphExec").finish_non_exhaustive()
    }
}
