//! The backend contexts are created on: a device (replaced on rebuild), its health, the
//! graphs the runtime knows by model id, and the execution options.

use std::collections::BTreeMap;
use std::fmt;

use std::sync::Arc;

use aegis_cuda::sync::{lock, Mutex};
use aegis_cuda::Device;
use aegis_exec::{ExecOptions, ExecutionGraph};

use crate::error::ContextError;
use crate::fault::DeviceHealth;

/// One generation of the device: a rebuild makes a new one, with fresh health.
#[derive(Debug)]
pub struct DeviceGeneration {
    /// The device.
    pub device: Device,
    /// Its health (fatal faults).
    pub health: Arc<DeviceHealth>,
    /// 0 for the first device, +1 per rebuild.
    pub generation: u64,
}

struct Inner {
    current: Mutex<Arc<DeviceGeneration>>,
    graphs: Mutex<BTreeMap<String, Arc<ExecutionGraph>>>,
    options: ExecOptions,
}

/// Where contexts run. Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("generation", &self.generation().generation)
            .field("models", &self.model_ids())
            .finish()
    }
}

impl Backend {
    /// A backend on `device`; models are prepared with `options` (a context's stream budget
    /// may lower `options.streams`).
    pub fn new(device: Device, options: ExecOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: Mutex::new(Arc::new(DeviceGeneration {
                    device,
                    health: Arc::new(DeviceHealth::new()),
                    generation: 0,
                })),
                graphs: Mutex::new(BTreeMap::new()),
                options,
            }),
        }
    }

    /// The current device generation.
    pub fn generation(&self) -> Arc<DeviceGeneration> {
        Arc::clone(&lock(&self.inner.current))
    }

    /// The current device.
    pub fn device(&self) -> Device {
        self.generation().device.clone()
    }

    /// The current device's health.
    pub fn health(&self) -> Arc<DeviceHealth> {
        Arc::clone(&self.generation().health)
    }

    /// The execution options.
    pub fn options(&self) -> &ExecOptions {
        &self.inner.options
    }

    /// Makes `graph` known as `model_id`.
    ///
    /// # Errors
    /// [`ContextError::DuplicateModel`] when the id is taken.
    pub fn register(&self, model_id: &str, graph: Arc<ExecutionGraph>) -> Result<(), ContextError> {
        let mut g = lock(&self.inner.graphs);
        if g.contains_key(model_id) {
            return Err(ContextError::DuplicateModel {
                model: model_id.to_owned(),
            });
        }
        g.insert(model_id.to_owned(), graph);
        Ok(())
    }

    /// Forgets a model id; returns its graph.
    pub fn unregister(&self, model_id: &str) -> Option<Arc<ExecutionGraph>> {
        lock(&self.inner.graphs).remove(model_id)
    }

    /// The graph known as `model_id`.
    pub fn graph(&self, model_id: &str) -> Option<Arc<ExecutionGraph>> {
        lock(&self.inner.graphs).get(model_id).cloned()
    }

    /// Every known model id, sorted.
    pub fn model_ids(&self) -> Vec<String> {
        lock(&self.inner.graphs).keys().cloned().collect()
    }

    /// Replaces the device with a fresh one ([`Device::rebuild`]) and fresh health. Contexts
    /// must then be re-prepared ([`crate::ExecutionContext::rebuild`]).
    ///
    /// # Errors
    /// The device's error when it cannot be recreated.
    pub fn rebuild_device(&self) -> Result<Arc<DeviceGeneration>, ContextError> {
        let mut cur = lock(&self.inner.current);
        let device = cur.device.rebuild()?;
        let next = Arc::new(DeviceGeneration {
            device,
            health: Arc::new(DeviceHealth::new()),
            generation: cur.generation + 1,
        });
        *cur = Arc::clone(&next);
        tracing::info!(target: "aegis_context", event = "DeviceRebuilt", generation = next.generation, "device rebuilt");
        Ok(next)
    }
}
