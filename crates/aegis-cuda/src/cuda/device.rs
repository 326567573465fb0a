//! A CUDA device: its primary context and the state shared by every handle made on it.

use std::sync::mpsc;

use crate::device::{BackendKind, DeviceInfo};
use crate::error::{CallSite, Categorized, CudaError, ErrorCategory, Result};
use crate::host::Label;
use crate::raw::cuda as raw;
use crate::sync::{lock, Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// A notification to run on the device's callback thread.
pub(crate) struct CallbackJob {
    pub(crate) label: Label,
    pub(crate) stream: u64,
    pub(crate) f: Box<dyn FnOnce() + Send + 'static>,
    /// Where a panic in `f` is reported (the stream's next synchronise).
    pub(crate) errors: Arc<Mutex<Option<CudaError>>>,
}

pub(crate) struct CudaDevice {
    ordinal: u32,
    raw: raw::RawDevice,
    ctx: raw::Ctx,
    info: DeviceInfo,
    /// (least, greatest) stream priority; greatest is numerically lowest.
    priority_range: (i32, i32),
    used: AtomicU64,
    next_id: AtomicU64,
    poisoned: AtomicBool,
    poison: Mutex<Option<CudaError>>,
    has_deferred: AtomicBool,
    /// First error raised where it could not be returned (`Drop`, infallible queries).
    deferred: Mutex<Option<CudaError>>,
    /// Set by `rebuild`: the context was reset, so this state's handles are already gone and
    /// their `Drop`s must not touch the driver.
    retired: AtomicBool,
    callbacks: Mutex<Option<mpsc::Sender<CallbackJob>>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.info.name)
            .finish()
    }
}

fn unavailable(ordinal: u32, reason: String) -> CudaError {
    CudaError::BackendUnavailable {
        call: "Device::cuda",
        backend: "cuda",
        reason: format!("device {ordinal}: {reason}"),
    }
}

fn probe(dev: raw::RawDevice, ordinal: u32, site: CallSite) -> Result<DeviceInfo> {
    let (cc, sms) = raw::device_caps(dev, site)?;
    Ok(DeviceInfo {
        backend: BackendKind::Cuda,
        ordinal,
        name: raw::device_name(dev, site)?,
        total_memory: raw::device_total_mem(dev, site)?,
        compute_capability: Some(cc),
        parallelism: sms as usize,
    })
}

impl CudaDevice {
    /// Initialises the driver (once), retains device `ordinal`'s primary context. A driver
    /// that does not answer (no driver, the stub library, no device) is
    /// [`CudaError::BackendUnavailable`] naming the driver's error.
    pub(crate) fn open(ordinal: u32, site: CallSite) -> Result<Arc<Self>> {
        raw::init(site).map_err(|e| unavailable(ordinal, e.to_string()))?;
        let count = raw::device_count(site).map_err(|e| unavailable(ordinal, e.to_string()))?;
        if ordinal >= count {
            return Err(unavailable(
                ordinal,
                format!("the driver reports {count} CUDA device(s)"),
            ));
        }
        let dev = raw::device_get(ordinal, site)?;
        let info = probe(dev, ordinal, site)?;
        let ctx = raw::primary_ctx_retain(dev, site)?;
        let range = raw::bind(ctx, site).and_then(|()| raw::stream_priority_range(site));
        let priority_range = match range {
            Ok(r) => r,
            Err(e) => {
                if let Err(e2) = raw::primary_ctx_release(dev, site) {
                    tracing::error!(target: "aegis_cuda", error = %e2, "releasing primary context");
                }
                return Err(e);
            }
        };
        let driver = raw::driver_version(site).unwrap_or(0);
        tracing::debug!(target: "aegis_cuda", ordinal, name = %info.name, driver, "CUDA device opened");
        Ok(Arc::new(Self {
            ordinal,
            raw: dev,
            ctx,
            info,
            priority_range,
            used: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
            has_deferred: AtomicBool::new(false),
            deferred: Mutex::new(None),
            retired: AtomicBool::new(false),
            callbacks: Mutex::new(None),
        }))
    }

    /// Every CUDA device the driver reports; empty when it does not answer.
    pub(crate) fn probe_all() -> Vec<DeviceInfo> {
        let site = CallSite::here();
        let count = match raw::init(site).and_then(|()| raw::device_count(site)) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(target: "aegis_cuda", error = %e, "no CUDA devices");
                return Vec::new();
            }
        };
        (0..count)
            .filter_map(|i| {
                let r = raw::device_get(i, site).and_then(|d| probe(d, i, site));
                r.map_err(|e| tracing::warn!(target: "aegis_cuda", ordinal = i, error = %e, "probe failed"))
                    .ok()
            })
            .collect()
    }

    pub(crate) fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub(crate) fn ctx(&self) -> raw::Ctx {
        self.ctx
    }

    pub(crate) fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn charge(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    pub(crate) fn uncharge(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Clamps a requested priority into the device's range.
    pub(crate) fn clamp_priority(&self, p: i32) -> i32 {
        let (least, greatest) = self.priority_range;
        p.clamp(greatest.min(least), least.max(greatest))
    }

    /// Free bytes on the device as the driver reports them (0 on error, which is deferred).
    pub(crate) fn free(&self) -> u64 {
        let site = CallSite::here();
        match self
            .enter("Device::memory_free", site)
            .and_then(|()| raw::mem_info(site))
        {
            Ok((free, _)) => free,
            Err(e) => {
                self.defer(e);
                0
            }
        }
    }

    /// (free, total) for an out-of-memory report; zeros when the driver cannot say.
    pub(crate) fn mem_info_for_report(&self) -> (u64, u64) {
        raw::mem_info(CallSite::here()).unwrap_or((0, self.info.total_memory))
    }

    pub(crate) fn poison_cause(&self) -> Option<CudaError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.poison).clone()
    }

    pub(crate) fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Run before every fallible operation: refuses work on a poisoned or retired device,
    /// returns (once) an error deferred from a `Drop`, and makes the context current on this
    /// thread.
    pub(crate) fn enter(&self, call: &'static str, site: CallSite) -> Result<()> {
        if let Some(cause) = self.poison_cause() {
            return Err(CudaError::DevicePoisoned {
                call,
                site,
                device: self.ordinal,
                cause: cause.to_string(),
            });
        }
        if self.retired() {
            return Err(CudaError::DevicePoisoned {
                call,
                site,
                device: self.ordinal,
                cause: "the device was rebuilt; re-create handles from the new Device".into(),
            });
        }
        if self.has_deferred.load(Ordering::Acquire) {
            if let Some(e) = lock(&self.deferred).take() {
                self.has_deferred.store(false, Ordering::Release);
                return Err(e);
            }
        }
        self.observe(raw::bind(self.ctx, site))
    }

    /// Makes the context current without the checks of [`CudaDevice::enter`] (for infallible
    /// queries, which must not consume a deferred error).
    pub(crate) fn bind(&self, site: CallSite) -> Result<()> {
        self.observe(raw::bind(self.ctx, site))
    }

    /// Passes a driver result through, poisoning the device on a Fatal error.
    pub(crate) fn observe<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if e.category() == ErrorCategory::Fatal {
                let mut p = lock(&self.poison);
                if p.is_none() {
                    tracing::error!(target: "aegis_cuda", device = self.ordinal, error = %e, "CUDA context poisoned");
                    *p = Some(e.clone());
                }
                self.poisoned.store(true, Ordering::Release);
            }
        }
        r
    }

    /// [`CudaDevice::observe`] for an error already in hand.
    pub(crate) fn fail(&self, e: CudaError) -> CudaError {
        let _ = self.observe(Err::<(), _>(e.clone()));
        e
    }

    /// Records an error that could not be returned where it happened (`Drop`): logged now,
    /// returned by the next fallible call, and poisoning the device when Fatal.
    pub(crate) fn defer(&self, e: CudaError) {
        tracing::error!(target: "aegis_cuda", device = self.ordinal, error = %e, "deferred CUDA error");
        let e = self.fail(e);
        let mut d = lock(&self.deferred);
        if d.is_none() {
            *d = Some(e);
            self.has_deferred.store(true, Ordering::Release);
        }
    }

    /// For `Drop` impls: binds the context and runs `f`, deferring its error. Skipped on a
    /// retired device (the reset already destroyed the resource) and on a poisoned one (every
    /// call would fail with the sticky error; `rebuild` resets the context, reclaiming it all).
    pub(crate) fn release(&self, f: impl FnOnce() -> Result<()>) {
        if self.retired() || self.poisoned.load(Ordering::Acquire) {
            return;
        }
        let site = CallSite::here();
        if let Err(e) = raw::bind(self.ctx, site).and_then(|()| f()) {
            self.defer(e);
        }
    }

    /// Posts a notification to the device's callback thread (spawned on first use).
    pub(crate) fn callback_sender(&self, site: CallSite) -> Result<mpsc::Sender<CallbackJob>> {
        let mut slot = lock(&self.callbacks);
        if let Some(tx) = &*slot {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::channel::<CallbackJob>();
        std::thread::Builder::new()
            .name(format!("aegis-cuda-callbacks-{}", self.ordinal))
            .spawn(move || {
                // Exits when the device (holding the sender) and all in-flight jobs are gone.
                for job in rx {
                    let CallbackJob {
                        label,
                        stream,
                        f,
                        errors,
                    } = job;
                    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                        let message = p
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic payload".to_owned());
                        let mut e = lock(&errors);
                        if e.is_none() {
                            *e = Some(CudaError::WorkPanicked {
                                label: label.into_owned(),
                                stream,
                                message,
                            });
                        }
                    }
                }
            })
            .map_err(|e| CudaError::Spawn {
                call: "Stream::callback",
                site,
                reason: e.to_string(),
            })?;
        *slot = Some(tx.clone());
        Ok(tx)
    }

    /// Resets the primary context (destroying every resource any handle made on it in this
    /// process) and opens the device afresh. This state is retired first so old handles'
    /// `Drop`s leave the driver alone.
    pub(crate) fn rebuild(&self, site: CallSite) -> Result<Arc<Self>> {
        self.retired.store(true, Ordering::Release);
        raw::primary_ctx_reset(self.raw, site)?;
        Self::open(self.ordinal, site)
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // Every stream, event, module and allocation holds an `Arc` to this state, so all are
        // gone; only the context's retain remains. Nothing can receive an error any more.
        let site = CallSite::here();
        if let Err(e) = raw::primary_ctx_release(self.raw, site) {
            tracing::error!(target: "aegis_cuda", device = self.ordinal, error = %e, "releasing primary context");
        }
        if let Some(e) = lock(&self.deferred).take() {
            tracing::error!(target: "aegis_cuda", device = self.ordinal, error = %e, "deferred error never surfaced: device dropped");
        }
    }
}
