//! Devices: enumeration, probing and selection.

use std::fmt;

use crate::error::{CallSite, CudaError, Result};
use crate::host::HostDevice;
use crate::sync::Arc;

/// Which backend a device runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The host backend: streams are worker threads, memory is aligned host memory.
    Host,
    /// An NVIDIA GPU through the CUDA driver API (cargo feature `cuda`).
    Cuda,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Host => "host",
            Self::Cuda => "cuda",
        })
    }
}

/// What a device is, as probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Backend of the device.
    pub backend: BackendKind,
    /// Ordinal within its backend.
    pub ordinal: u32,
    /// Human-readable name.
    pub name: String,
    /// Total memory in bytes (the configured capacity on the host backend).
    pub total_memory: u64,
    /// CUDA compute capability (major, minor); `None` on the host.
    pub compute_capability: Option<(u32, u32)>,
    /// Worker threads a host kernel may use by default; the SM count on CUDA.
    pub parallelism: usize,
}

/// Options for a host device.
#[derive(Debug, Clone)]
pub struct HostDeviceOptions {
    /// Memory capacity in bytes; allocations past it fail with [`CudaError::OutOfMemory`].
    pub capacity: u64,
    /// Threads a kernel may use (defaults to the machine's available parallelism).
    pub threads: usize,
    /// How long a stream's worker keeps polling for more work after its queue drains before
    /// it parks (default 15 µs; zero parks at once). Work arrives in bursts a few µs apart (a
    /// dispatch is several enqueues; the next request follows its predecessor's completion):
    /// catching them awake saves the enqueuer a wake-up syscall and the worker a park/unpark
    /// pair, for at most this much CPU per burst. An idle stream still sleeps.
    pub stream_linger: std::time::Duration,
}

impl Default for HostDeviceOptions {
    fn default() -> Self {
        Self {
            // The host "device" defaults to a quarter of a 64 GiB address budget; callers that
            // care set it explicitly (tests do, to exercise exhaustion).
            capacity: 16 << 30,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            stream_linger: std::time::Duration::from_micros(15),
        }
    }
}

/// A device handle. Cheap to clone; all clones refer to the same device state (memory
/// accounting, poisoning, fault injection).
#[derive(Clone)]
pub struct Device {
    pub(crate) repr: DeviceRepr,
}

#[derive(Clone)]
pub(crate) enum DeviceRepr {
    Host(Arc<HostDevice>),
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::cuda::CudaDevice>),
}

impl DeviceRepr {
    /// True when both refer to the same device state.
    pub(crate) fn same(&self, other: &DeviceRepr) -> bool {
        match (self, other) {
            (Self::Host(a), Self::Host(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "cuda")]
            (Self::Cuda(a), Self::Cuda(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "cuda")]
            _ => false,
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("info", &self.info())
            .finish()
    }
}

impl Device {
    /// A host device with default options.
    pub fn host() -> Self {
        Self::host_with(HostDeviceOptions::default())
    }

    /// A host device with the given options.
    pub fn host_with(options: HostDeviceOptions) -> Self {
        Self {
            repr: DeviceRepr::Host(Arc::new(HostDevice::new(options))),
        }
    }

    /// CUDA device `ordinal`. Fails with [`CudaError::BackendUnavailable`] when this build has
    /// no `cuda` feature or no driver/device is present.
    #[track_caller]
    pub fn cuda(ordinal: u32) -> Result<Self> {
        let site = CallSite::here();
        #[cfg(feature = "cuda")]
        {
            Ok(Self {
                repr: DeviceRepr::Cuda(crate::cuda::CudaDevice::open(ordinal, site)?),
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = site;
            Err(CudaError::BackendUnavailable {
                call: "Device::cuda",
                backend: "cuda",
                reason: format!(
                    "device {ordinal}: this build has no CUDA backend (enable the `cuda` cargo feature)"
                ),
            })
        }
    }

    /// Every device this process can use: the host device always, CUDA devices when the
    /// `cuda` feature is on and a driver answers.
    pub fn enumerate() -> Vec<DeviceInfo> {
        #[allow(unused_mut)] // only CUDA builds add to it
        let mut all = vec![Self::host().info()];
        #[cfg(feature = "cuda")]
        all.extend(crate::cuda::CudaDevice::probe_all());
        all
    }

    /// Picks the first CUDA device if there is one, else a host device.
    pub fn best_available() -> Self {
        Self::cuda(0).unwrap_or_else(|_| Self::host())
    }

    /// Probed facts about this device.
    pub fn info(&self) -> DeviceInfo {
        match &self.repr {
            DeviceRepr::Host(h) => h.info(),
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => c.info().clone(),
        }
    }

    /// Backend of this device.
    pub fn backend(&self) -> BackendKind {
        match &self.repr {
            DeviceRepr::Host(_) => BackendKind::Host,
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(_) => BackendKind::Cuda,
        }
    }

    /// Bytes currently allocated on this device through AegisRT.
    pub fn memory_used(&self) -> u64 {
        match &self.repr {
            DeviceRepr::Host(h) => h.used(),
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => c.used(),
        }
    }

    /// Bytes still free.
    pub fn memory_free(&self) -> u64 {
        match &self.repr {
            DeviceRepr::Host(h) => h.capacity().saturating_sub(h.used()),
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => c.free(),
        }
    }

    /// The fatal error that poisoned this device, if any. A poisoned device refuses all work
    /// until replaced by [`Device::rebuild`].
    pub fn poisoned(&self) -> Option<CudaError> {
        match &self.repr {
            DeviceRepr::Host(h) => h.poison_cause(),
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => c.poison_cause(),
        }
    }

    /// A fresh device on the same hardware with clean state. Handles made from the old device
    /// keep failing; everything must be re-created.
    ///
    /// CUDA: resets the device's primary context (`cuDevicePrimaryCtxReset`), which destroys
    /// every resource made on it by *any* `Device` handle of that ordinal in this process, then
    /// opens it afresh. NVIDIA documents that after some sticky errors only a new process
    /// recovers; then this returns the driver's (Fatal) error.
    #[track_caller]
    pub fn rebuild(&self) -> Result<Self> {
        match &self.repr {
            DeviceRepr::Host(h) => Ok(Self::host_with(h.options().clone())),
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(c) => Ok(Self {
                repr: DeviceRepr::Cuda(c.rebuild(CallSite::here())?),
            }),
        }
    }

    /// Makes the matching enqueued item fail (host backend only; a deterministic test hook).
    #[track_caller]
    pub fn inject_fault(&self, rule: FaultRule) -> Result<()> {
        match &self.repr {
            DeviceRepr::Host(h) => {
                h.inject(rule);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            DeviceRepr::Cuda(_) => {
                let _ = rule;
                Err(CudaError::WrongBackend {
                    call: "Device::inject_fault",
                    site: CallSite::here(),
                    backend: "cuda",
                })
            }
        }
    }

    /// True when both handles refer to the same device state.
    pub fn same_as(&self, other: &Device) -> bool {
        self.repr.same(&other.repr)
    }
}

/// Which enqueued item an injected fault hits. Items are counted at enqueue time, so a rule
/// hits the same item on every run of a deterministic program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTrigger {
    /// The `n`th item (0-based) enqueued on the device after the rule is installed, any stream.
    NthItem(u64),
    /// The `n`th work item (0-based) whose label equals `label`, counted from installation.
    Label {
        /// Work label to match.
        label: String,
        /// Which match to hit (0 = the first).
        n: u64,
    },
}

/// One injected fault: where it hits and what it does. It fires once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Which item.
    pub trigger: FaultTrigger,
    /// Recoverable or sticky.
    pub kind: crate::InjectedFaultKind,
}
