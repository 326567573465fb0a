//! The CUDA driver and NVRTC, one thin checked wrapper per call (cudarc's `result.rs` pattern).
//!
//! The only module that names `cust` and the only CUDA code holding `unsafe`. Everything above
//! it (`crate::cuda`, `crate::nvrtc`) is safe code over these wrappers.
//!
//! ## Why our own `extern` declarations
//! `cust_raw` declares every driver function as returning `CUresult`, a Rust `enum` generated
//! from CUDA 11.4's headers. A newer driver returns codes that enum lacks (`CUDA_ERROR_CONTAINED`
//! = 226, `CUDA_ERROR_INVALID_CLUSTER_SIZE` = 912, ...), and receiving an out-of-range value as
//! a Rust enum is undefined behaviour before any code could check it. So the functions we call
//! are declared here returning `c_int`; every result goes through [`check`], which maps unknown
//! codes to [`DriverCode::Unknown`]. `cust` still provides the link to `libcuda` (its build
//! script), the handle types and the enum constants we pass *in* (always valid values).
//! `cust`'s safe wrappers are not used: their `Drop` impls discard or panic on errors, which
//! STYLE §4 forbids.
//!
//! ## Contracts
//! Functions taking a host pointer for an asynchronous copy (`*_async`) are safe `pub(crate)`
//! functions with a contract, stated on each: the caller keeps the host memory alive and
//! unaliased by `&mut` until the stream has passed the copy. `crate::cuda` upholds it by
//! parking the owner of that memory in the stream's keep-alive list, released only after a
//! successful synchronise. Device addresses are plain integers: a wrong one faults on the GPU
//! (a driver error), never in host memory.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use cust::sys as cu;

use crate::cuda::codes::DriverCode;
use crate::error::{CallSite, CudaError, Result};

#[link(name = "cuda")]
extern "C" {
    fn cuInit(flags: c_uint) -> c_int;
    fn cuDriverGetVersion(version: *mut c_int) -> c_int;
    fn cuDeviceGetCount(count: *mut c_int) -> c_int;
    fn cuDeviceGet(device: *mut cu::CUdevice, ordinal: c_int) -> c_int;
    fn cuDeviceGetName(name: *mut c_char, len: c_int, device: cu::CUdevice) -> c_int;
    fn cuDeviceTotalMem_v2(bytes: *mut usize, device: cu::CUdevice) -> c_int;
    fn cuDeviceGetAttribute(
        value: *mut c_int,
        attribute: cu::CUdevice_attribute,
        device: cu::CUdevice,
    ) -> c_int;
    fn cuDevicePrimaryCtxRetain(ctx: *mut cu::CUcontext, device: cu::CUdevice) -> c_int;
    fn cuDevicePrimaryCtxRelease_v2(device: cu::CUdevice) -> c_int;
    fn cuDevicePrimaryCtxReset_v2(device: cu::CUdevice) -> c_int;
    fn cuCtxSetCurrent(ctx: cu::CUcontext) -> c_int;
    fn cuCtxGetStreamPriorityRange(least: *mut c_int, greatest: *mut c_int) -> c_int;
    fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> c_int;
    fn cuMemAlloc_v2(ptr: *mut cu::CUdeviceptr, bytes: usize) -> c_int;
    fn cuMemFree_v2(ptr: cu::CUdeviceptr) -> c_int;
    fn cuMemHostRegister_v2(ptr: *mut c_void, bytes: usize, flags: c_uint) -> c_int;
    fn cuMemHostUnregister(ptr: *mut c_void) -> c_int;
    fn cuMemsetD8_v2(dst: cu::CUdeviceptr, value: u8, count: usize) -> c_int;
    fn cuMemsetD8Async(
        dst: cu::CUdeviceptr,
        value: u8,
        count: usize,
        stream: cu::CUstream,
    ) -> c_int;
    fn cuMemcpyHtoDAsync_v2(
        dst: cu::CUdeviceptr,
        src: *const c_void,
        bytes: usize,
        stream: cu::CUstream,
    ) -> c_int;
    fn cuMemcpyDtoHAsync_v2(
        dst: *mut c_void,
        src: cu::CUdeviceptr,
        bytes: usize,
        stream: cu::CUstream,
    ) -> c_int;
    fn cuMemcpyDtoDAsync_v2(
        dst: cu::CUdeviceptr,
        src: cu::CUdeviceptr,
        bytes: usize,
        stream: cu::CUstream,
    ) -> c_int;
    fn cuStreamCreateWithPriority(
        stream: *mut cu::CUstream,
        flags: c_uint,
        priority: c_int,
    ) -> c_int;
    fn cuStreamDestroy_v2(stream: cu::CUstream) -> c_int;
    fn cuStreamSynchronize(stream: cu::CUstream) -> c_int;
    fn cuStreamQuery(stream: cu::CUstream) -> c_int;
    fn cuStreamWaitEvent(stream: cu::CUstream, event: cu::CUevent, flags: c_uint) -> c_int;
    fn cuStreamBeginCapture_v2(stream: cu::CUstream, mode: cu::CUstreamCaptureMode) -> c_int;
    fn cuStreamEndCapture(stream: cu::CUstream, graph: *mut cu::CUgraph) -> c_int;
    fn cuLaunchHostFunc(stream: cu::CUstream, f: cu::CUhostFn, data: *mut c_void) -> c_int;
    fn cuEventCreate(event: *mut cu::CUevent, flags: c_uint) -> c_int;
    fn cuEventRecord(event: cu::CUevent, stream: cu::CUstream) -> c_int;
    fn cuEventSynchronize(event: cu::CUevent) -> c_int;
    fn cuEventQuery(event: cu::CUevent) -> c_int;
    fn cuEventElapsedTime(ms: *mut f32, start: cu::CUevent, end: cu::CUevent) -> c_int;
    fn cuEventDestroy_v2(event: cu::CUevent) -> c_int;
    fn cuModuleLoadDataEx(
        module: *mut cu::CUmodule,
        image: *const c_void,
        num_options: c_uint,
        options: *mut cu::CUjit_option,
        values: *mut *mut c_void,
    ) -> c_int;
    fn cuModuleUnload(module: cu::CUmodule) -> c_int;
    fn cuOccupancyMaxActiveBlocksPerMultiprocessor(
        num_blocks: *mut c_int,
        f: cu::CUfunction,
        block_size: c_int,
        dynamic_smem_bytes: usize,
    ) -> c_int;
    fn cuModuleGetFunction(
        f: *mut cu::CUfunction,
        module: cu::CUmodule,
        name: *const c_char,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn cuLaunchKernel(
        f: cu::CUfunction,
        grid_x: c_uint,
        grid_y: c_uint,
        grid_z: c_uint,
        block_x: c_uint,
        block_y: c_uint,
        block_z: c_uint,
        shared_mem_bytes: c_uint,
        stream: cu::CUstream,
        params: *mut *mut c_void,
        extra: *mut *mut c_void,
    ) -> c_int;
    fn cuGraphInstantiateWithFlags(
        exec: *mut cu::CUgraphExec,
        graph: cu::CUgraph,
        flags: c_ulonglong,
    ) -> c_int;
    fn cuGraphLaunch(exec: cu::CUgraphExec, stream: cu::CUstream) -> c_int;
    fn cuGraphExecDestroy(exec: cu::CUgraphExec) -> c_int;
    fn cuGraphDestroy(graph: cu::CUgraph) -> c_int;
}

/// The one checked path: every driver result goes through here.
pub(crate) fn check(call: &'static str, site: CallSite, code: c_int) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(driver_error(call, site, code))
    }
}

/// The [`CudaError::Driver`] for a non-zero code.
pub(crate) fn driver_error(call: &'static str, site: CallSite, code: c_int) -> CudaError {
    let c = DriverCode::from_raw(code);
    CudaError::Driver {
        call,
        site,
        // Codes are non-negative by the driver's definition; a negative one is kept visible
        // as u32::MAX rather than reinterpreted.
        code: u32::try_from(c.code()).unwrap_or(u32::MAX),
        name: c.name(),
        category: c.category(),
    }
}

/// A device pointer (`CUdeviceptr`).
pub(crate) type DevicePtr = cu::CUdeviceptr;
/// A device ordinal handle (`CUdevice`).
pub(crate) type RawDevice = cu::CUdevice;

macro_rules! handle {
    ($(#[$m:meta])* $name:ident, $raw:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) struct $name($raw);
        // SAFETY: driver handles are opaque tokens the driver lets any thread use (the API is
        // thread-safe); the RAII owner in `crate::cuda` decides when it is destroyed.
        unsafe impl Send for $name {}
        // SAFETY: as above; a handle is never dereferenced on the host.
        unsafe impl Sync for $name {}
    };
}

handle!(
    /// A context (`CUcontext`), the device's primary context.
    Ctx,
    cu::CUcontext
);
handle!(
    /// A stream (`CUstream`).
    RawStream,
    cu::CUstream
);
handle!(
    /// An event (`CUevent`).
    RawEvent,
    cu::CUevent
);
handle!(
    /// A loaded module (`CUmodule`).
    RawModule,
    cu::CUmodule
);
handle!(
    /// A kernel in a loaded module (`CUfunction`).
    RawFunction,
    cu::CUfunction
);
handle!(
    /// A captured graph (`CUgraph`).
    RawGraph,
    cu::CUgraph
);
handle!(
    /// An instantiated graph (`CUgraphExec`).
    RawGraphExec,
    cu::CUgraphExec
);

// ---------------------------------------------------------------- initialisation and devices

/// `cuInit(0)`, once per process; later calls return the first call's result.
pub(crate) fn init(site: CallSite) -> Result<()> {
    static INIT: OnceLock<c_int> = OnceLock::new();
    // SAFETY: cuInit takes a flags word (must be 0) and no pointers.
    let code = *INIT.get_or_init(|| unsafe { cuInit(0) });
    check("cuInit", site, code)
}

/// Driver version as `major * 1000 + minor * 10`.
pub(crate) fn driver_version(site: CallSite) -> Result<i32> {
    let mut v = 0;
    // SAFETY: `v` is a valid out-pointer for the call's duration.
    check("cuDriverGetVersion", site, unsafe {
        cuDriverGetVersion(&mut v)
    })?;
    Ok(v)
}

pub(crate) fn device_count(site: CallSite) -> Result<u32> {
    let mut n = 0;
    // SAFETY: `n` is a valid out-pointer.
    check("cuDeviceGetCount", site, unsafe {
        cuDeviceGetCount(&mut n)
    })?;
    Ok(u32::try_from(n).unwrap_or(0))
}

pub(crate) fn device_get(ordinal: u32, site: CallSite) -> Result<RawDevice> {
    let ordinal = c_int::try_from(ordinal)
        .map_err(|_| CudaError::invalid("cuDeviceGet", format!("ordinal {ordinal} too large")))?;
    let mut d: RawDevice = 0;
    // SAFETY: `d` is a valid out-pointer.
    check("cuDeviceGet", site, unsafe { cuDeviceGet(&mut d, ordinal) })?;
    Ok(d)
}

pub(crate) fn device_name(dev: RawDevice, site: CallSite) -> Result<String> {
    let mut buf = [0 as c_char; 256];
    // SAFETY: the driver writes at most `len` bytes including the terminating NUL.
    check("cuDeviceGetName", site, unsafe {
        cuDeviceGetName(buf.as_mut_ptr(), buf.len() as c_int, dev)
    })?;
    // The last byte is forced to NUL so the read below always terminates inside `buf`.
    buf[buf.len() - 1] = 0;
    // SAFETY: `buf` is NUL-terminated (above) and lives for the borrow.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

pub(crate) fn device_total_mem(dev: RawDevice, site: CallSite) -> Result<u64> {
    let mut bytes = 0usize;
    // SAFETY: valid out-pointer.
    check("cuDeviceTotalMem_v2", site, unsafe {
        cuDeviceTotalMem_v2(&mut bytes, dev)
    })?;
    Ok(bytes as u64)
}

/// Compute capability (major, minor) and multiprocessor count.
pub(crate) fn device_caps(dev: RawDevice, site: CallSite) -> Result<((u32, u32), u32)> {
    use cu::CUdevice_attribute::{
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR as MAJOR,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR as MINOR,
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT as SMS,
    };
    let attr = |a: cu::CUdevice_attribute| -> Result<u32> {
        let mut v = 0;
        // SAFETY: valid out-pointer; `a` is a valid enum value we construct.
        check("cuDeviceGetAttribute", site, unsafe {
            cuDeviceGetAttribute(&mut v, a, dev)
        })?;
        Ok(u32::try_from(v).unwrap_or(0))
    };
    Ok(((attr(MAJOR)?, attr(MINOR)?), attr(SMS)?))
}

pub(crate) fn primary_ctx_retain(dev: RawDevice, site: CallSite) -> Result<Ctx> {
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    check("cuDevicePrimaryCtxRetain", site, unsafe {
        cuDevicePrimaryCtxRetain(&mut ctx, dev)
    })?;
    Ok(Ctx(ctx))
}

pub(crate) fn primary_ctx_release(dev: RawDevice, site: CallSite) -> Result<()> {
    // SAFETY: releases one retain taken by `primary_ctx_retain`; no pointers.
    check("cuDevicePrimaryCtxRelease_v2", site, unsafe {
        cuDevicePrimaryCtxRelease_v2(dev)
    })
}

/// Destroys every resource of the device's primary context in this process (rebuild path).
pub(crate) fn primary_ctx_reset(dev: RawDevice, site: CallSite) -> Result<()> {
    // SAFETY: no pointers; handles made in the old context are retired by the caller.
    check("cuDevicePrimaryCtxReset_v2", site, unsafe {
        cuDevicePrimaryCtxReset_v2(dev)
    })
}

/// Makes `ctx` current on the calling thread (cheap: a thread-local store in the driver).
pub(crate) fn bind(ctx: Ctx, site: CallSite) -> Result<()> {
    // SAFETY: `ctx` is a live primary context retained by its owner.
    check("cuCtxSetCurrent", site, unsafe { cuCtxSetCurrent(ctx.0) })
}

/// (least, greatest) stream priority of the current context; greatest is numerically lowest.
pub(crate) fn stream_priority_range(site: CallSite) -> Result<(i32, i32)> {
    let (mut least, mut greatest) = (0, 0);
    // SAFETY: valid out-pointers.
    check("cuCtxGetStreamPriorityRange", site, unsafe {
        cuCtxGetStreamPriorityRange(&mut least, &mut greatest)
    })?;
    Ok((least, greatest))
}

// ---------------------------------------------------------------------------------- memory

/// (free, total) bytes of the current context's device.
pub(crate) fn mem_info(site: CallSite) -> Result<(u64, u64)> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out-pointers.
    check("cuMemGetInfo_v2", site, unsafe {
        cuMemGetInfo_v2(&mut free, &mut total)
    })?;
    Ok((free as u64, total as u64))
}

/// Allocates `bytes` (> 0) of device memory in the current context.
pub(crate) fn mem_alloc(bytes: usize, site: CallSite) -> Result<DevicePtr> {
    let mut p: DevicePtr = 0;
    // SAFETY: valid out-pointer.
    check("cuMemAlloc_v2", site, unsafe {
        cuMemAlloc_v2(&mut p, bytes)
    })?;
    Ok(p)
}

/// Frees an allocation made by [`mem_alloc`] in the current context.
pub(crate) fn mem_free(p: DevicePtr, site: CallSite) -> Result<()> {
    // SAFETY: device address only; a stale one is reported by the driver.
    check("cuMemFree_v2", site, unsafe { cuMemFree_v2(p) })
}

/// Fills device memory synchronously on the legacy default stream.
pub(crate) fn memset_d8(dst: DevicePtr, value: u8, bytes: usize, site: CallSite) -> Result<()> {
    // SAFETY: device address only.
    check("cuMemsetD8_v2", site, unsafe {
        cuMemsetD8_v2(dst, value, bytes)
    })
}

pub(crate) fn memset_d8_async(
    dst: DevicePtr,
    value: u8,
    bytes: usize,
    stream: RawStream,
    site: CallSite,
) -> Result<()> {
    // SAFETY: device address only; `stream` is live (owned by the caller).
    check("cuMemsetD8Async", site, unsafe {
        cuMemsetD8Async(dst, value, bytes, stream.0)
    })
}

/// Host → device copy. Contract: `src..src+bytes` stays allocated and is not written until
/// the stream has passed this copy.
pub(crate) fn memcpy_htod_async(
    dst: DevicePtr,
    src: *const u8,
    bytes: usize,
    stream: RawStream,
    site: CallSite,
) -> Result<()> {
    // SAFETY: per the contract the source range is valid for reads until the copy completes.
    check("cuMemcpyHtoDAsync_v2", site, unsafe {
        cuMemcpyHtoDAsync_v2(dst, src.cast(), bytes, stream.0)
    })
}

/// Device → host copy. Contract: `dst..dst+bytes` stays allocated and is neither read nor
/// written by the host until the stream has passed this copy.
pub(crate) fn memcpy_dtoh_async(
    dst: *mut u8,
    src: DevicePtr,
    bytes: usize,
    stream: RawStream,
    site: CallSite,
) -> Result<()> {
    // SAFETY: per the contract the destination range is exclusively the copy's until done.
    check("cuMemcpyDtoHAsync_v2", site, unsafe {
        cuMemcpyDtoHAsync_v2(dst.cast(), src, bytes, stream.0)
    })
}

pub(crate) fn memcpy_dtod_async(
    dst: DevicePtr,
    src: DevicePtr,
    bytes: usize,
    stream: RawStream,
    site: CallSite,
) -> Result<()> {
    // SAFETY: device addresses only.
    check("cuMemcpyDtoDAsync_v2", site, unsafe {
        cuMemcpyDtoDAsync_v2(dst, src, bytes, stream.0)
    })
}

/// Page-locks existing host memory (`cuMemHostRegister`, flags 0). Contract: the range stays
/// allocated until [`host_unregister`] is called for it.
pub(crate) fn host_register(ptr: *mut u8, bytes: usize, site: CallSite) -> Result<()> {
    // SAFETY: per the contract the range is live; the driver only pins its pages.
    check("cuMemHostRegister_v2", site, unsafe {
        cuMemHostRegister_v2(ptr.cast(), bytes, 0)
    })
}

pub(crate) fn host_unregister(ptr: *mut u8, site: CallSite) -> Result<()> {
    // SAFETY: unpins a range registered by `host_register`; memory itself is untouched.
    check("cuMemHostUnregister", site, unsafe {
        cuMemHostUnregister(ptr.cast())
    })
}

// ------------------------------------------------------------------------- streams, events

/// A blocking stream (flags 0: ordered after the legacy default stream, which zero-fills new
/// allocations) with the given priority.
pub(crate) fn stream_create(priority: i32, site: CallSite) -> Result<RawStream> {
    let mut s = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    check("cuStreamCreateWithPriority", site, unsafe {
        cuStreamCreateWithPriority(&mut s, 0, priority)
    })?;
    Ok(RawStream(s))
}

pub(crate) fn stream_destroy(s: RawStream, site: CallSite) -> Result<()> {
    // SAFETY: `s` is owned by the caller, destroyed once.
    check("cuStreamDestroy_v2", site, unsafe {
        cuStreamDestroy_v2(s.0)
    })
}

pub(crate) fn stream_synchronize(s: RawStream, site: CallSite) -> Result<()> {
    // SAFETY: live stream handle.
    check("cuStreamSynchronize", site, unsafe {
        cuStreamSynchronize(s.0)
    })
}

/// `Ok(true)` when all work is done, `Ok(false)` when not ready.
pub(crate) fn stream_query(s: RawStream, site: CallSite) -> Result<bool> {
    // SAFETY: live stream handle.
    let code = unsafe { cuStreamQuery(s.0) };
    if code == crate::cuda::codes::NOT_READY {
        return Ok(false);
    }
    check("cuStreamQuery", site, code).map(|()| true)
}

pub(crate) fn stream_wait_event(s: RawStream, e: RawEvent, site: CallSite) -> Result<()> {
    // SAFETY: live handles.
    check("cuStreamWaitEvent", site, unsafe {
        cuStreamWaitEvent(s.0, e.0, 0)
    })
}

/// Starts capturing `s` into a graph (thread-local mode: only this thread's unsafe calls can
/// invalidate the capture).
pub(crate) fn stream_begin_capture(s: RawStream, site: CallSite) -> Result<()> {
    // SAFETY: live handle; a valid enum value.
    check("cuStreamBeginCapture_v2", site, unsafe {
        cuStreamBeginCapture_v2(
            s.0,
            cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
        )
    })
}

pub(crate) fn stream_end_capture(s: RawStream, site: CallSite) -> Result<RawGraph> {
    let mut g = std::ptr::null_mut();
    // SAFETY: live handle, valid out-pointer.
    check("cuStreamEndCapture", site, unsafe {
        cuStreamEndCapture(s.0, &mut g)
    })?;
    Ok(RawGraph(g))
}

/// A host callback: runs once, on a driver thread, after everything enqueued before it.
pub(crate) type HostCallback = Box<dyn FnOnce() + Send + 'static>;

unsafe extern "C" fn host_trampoline(data: *mut c_void) {
    // SAFETY: `data` is the `Box<HostCallback>` leaked in `launch_host_func`; the driver calls
    // each host function exactly once, so ownership is taken back exactly once.
    let f = unsafe { Box::from_raw(data.cast::<HostCallback>()) };
    // Unwinding into the driver's C frames would be undefined behaviour; the callbacks
    // `crate::cuda` enqueues only forward work to a Rust thread and cannot panic in practice,
    // but a panic is still caught and logged.
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!(target: "aegis_cuda", "panic in CUDA host callback");
    }
}

/// Enqueues `f` to run after the stream's prior work (`cuLaunchHostFunc`). `f` must not call
/// the CUDA API (the driver forbids it on its callback thread).
pub(crate) fn launch_host_func(s: RawStream, f: HostCallback, site: CallSite) -> Result<()> {
    let data = Box::into_raw(Box::new(f));
    // SAFETY: `data` is a valid heap pointer handed to the trampoline, which frees it.
    let code = unsafe { cuLaunchHostFunc(s.0, Some(host_trampoline), data.cast()) };
    if code != 0 {
        // Not enqueued: the trampoline will never run, so reclaim the box here.
        // SAFETY: `data` came from `Box::into_raw` above and was not handed over.
        drop(unsafe { Box::from_raw(data) });
    }
    check("cuLaunchHostFunc", site, code)
}

/// An event with timing enabled (flags 0).
pub(crate) fn event_create(site: CallSite) -> Result<RawEvent> {
    let mut e = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    check("cuEventCreate", site, unsafe { cuEventCreate(&mut e, 0) })?;
    Ok(RawEvent(e))
}

pub(crate) fn event_record(e: RawEvent, s: RawStream, site: CallSite) -> Result<()> {
    // SAFETY: live handles.
    check("cuEventRecord", site, unsafe { cuEventRecord(e.0, s.0) })
}

pub(crate) fn event_synchronize(e: RawEvent, site: CallSite) -> Result<()> {
    // SAFETY: live handle.
    check("cuEventSynchronize", site, unsafe {
        cuEventSynchronize(e.0)
    })
}

/// `Ok(true)` when complete (or never recorded), `Ok(false)` when not ready.
pub(crate) fn event_query(e: RawEvent, site: CallSite) -> Result<bool> {
    // SAFETY: live handle.
    let code = unsafe { cuEventQuery(e.0) };
    if code == crate::cuda::codes::NOT_READY {
        return Ok(false);
    }
    check("cuEventQuery", site, code).map(|()| true)
}

/// Milliseconds between two completed events.
pub(crate) fn event_elapsed_ms(start: RawEvent, end: RawEvent, site: CallSite) -> Result<f32> {
    let mut ms = 0f32;
    // SAFETY: live handles, valid out-pointer.
    check("cuEventElapsedTime", site, unsafe {
        cuEventElapsedTime(&mut ms, start.0, end.0)
    })?;
    Ok(ms)
}

pub(crate) fn event_destroy(e: RawEvent, site: CallSite) -> Result<()> {
    // SAFETY: owned handle, destroyed once.
    check("cuEventDestroy_v2", site, unsafe { cuEventDestroy_v2(e.0) })
}

// ------------------------------------------------------------------------- modules, kernels

/// Loads PTX into the current context. On failure the JIT's error log is returned alongside.
pub(crate) fn module_load_ptx(
    ptx: &str,
    site: CallSite,
) -> std::result::Result<RawModule, (CudaError, String)> {
    let image = CString::new(ptx).map_err(|_| {
        (
            CudaError::invalid("cuModuleLoadDataEx", "PTX contains a NUL byte"),
            String::new(),
        )
    })?;
    let mut log = vec![0u8; 16 * 1024];
    let mut options = [
        cu::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        cu::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    // The driver's convention: scalar option values travel in the pointer slot itself.
    let mut values: [*mut c_void; 2] = [log.as_mut_ptr().cast(), log.len() as *mut c_void];
    let mut m = std::ptr::null_mut();
    // SAFETY: `image` is NUL-terminated PTX; `options`/`values` have 2 entries each; the log
    // buffer outlives the call and its size is what the driver is told.
    let code = unsafe {
        cuModuleLoadDataEx(
            &mut m,
            image.as_ptr().cast(),
            2,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    if code == 0 {
        return Ok(RawModule(m));
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).into_owned();
    Err((driver_error("cuModuleLoadDataEx", site, code), text))
}

pub(crate) fn module_unload(m: RawModule, site: CallSite) -> Result<()> {
    // SAFETY: owned handle, unloaded once.
    check("cuModuleUnload", site, unsafe { cuModuleUnload(m.0) })
}

pub(crate) fn module_get_function(m: RawModule, name: &str, site: CallSite) -> Result<RawFunction> {
    let cname = CString::new(name)
        .map_err(|_| CudaError::invalid("cuModuleGetFunction", "kernel name contains NUL"))?;
    let mut f = std::ptr::null_mut();
    // SAFETY: live module, NUL-terminated name, valid out-pointer.
    check("cuModuleGetFunction", site, unsafe {
        cuModuleGetFunction(&mut f, m.0, cname.as_ptr())
    })?;
    Ok(RawFunction(f))
}

/// Kernel arguments as the driver wants them: one 8-byte slot per parameter, each holding the
/// value in its low bytes (little-endian), so a 4-byte parameter reads its value from the
/// start of its slot.
#[derive(Debug, Default, Clone)]
pub(crate) struct ParamSlots(pub(crate) Vec<u64>);

/// How many blocks of `block_size` threads (and `dynamic_smem_bytes` of dynamic shared
/// memory) of `f` fit on one multiprocessor at once.
pub(crate) fn occupancy_max_active_blocks(
    f: RawFunction,
    block_size: u32,
    dynamic_smem_bytes: usize,
    site: CallSite,
) -> Result<u32> {
    let block = c_int::try_from(block_size).map_err(|_| {
        CudaError::invalid(
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
            "block size over i32",
        )
    })?;
    let mut n: c_int = 0;
    // SAFETY: live function handle, valid out-pointer; the call only reads the function's
    // attributes.
    check(
        "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        site,
        unsafe {
            cuOccupancyMaxActiveBlocksPerMultiprocessor(&mut n, f.0, block, dynamic_smem_bytes)
        },
    )?;
    Ok(u32::try_from(n).unwrap_or(0))
}

/// Launches `f`. `params` must match the kernel's parameter list (count and sizes, at most 8
/// bytes each); `crate::cuda` checks that against the PTX signature before calling.
pub(crate) fn launch_kernel(
    f: RawFunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_mem_bytes: u32,
    stream: RawStream,
    params: &ParamSlots,
    site: CallSite,
) -> Result<()> {
    let mut slots = params.0.clone();
    let mut ptrs: Vec<*mut c_void> = slots
        .iter_mut()
        .map(|s| std::ptr::from_mut(s).cast())
        .collect();
    // SAFETY: each pointer addresses a live 8-byte slot for the call's duration (the driver
    // copies parameter values at launch); the null `extra` means "use kernelParams".
    check("cuLaunchKernel", site, unsafe {
        cuLaunchKernel(
            f.0,
            grid.0,
            grid.1,
            grid.2,
            block.0,
            block.1,
            block.2,
            shared_mem_bytes,
            stream.0,
            if ptrs.is_empty() {
                std::ptr::null_mut()
            } else {
                ptrs.as_mut_ptr()
            },
            std::ptr::null_mut(),
        )
    })
}

// --------------------------------------------------------------------------------- graphs

pub(crate) fn graph_instantiate(g: RawGraph, site: CallSite) -> Result<RawGraphExec> {
    let mut e = std::ptr::null_mut();
    // SAFETY: live graph, valid out-pointer.
    check("cuGraphInstantiateWithFlags", site, unsafe {
        cuGraphInstantiateWithFlags(&mut e, g.0, 0)
    })?;
    Ok(RawGraphExec(e))
}

pub(crate) fn graph_launch(e: RawGraphExec, s: RawStream, site: CallSite) -> Result<()> {
    // SAFETY: live handles.
    check("cuGraphLaunch", site, unsafe { cuGraphLaunch(e.0, s.0) })
}

pub(crate) fn graph_exec_destroy(e: RawGraphExec, site: CallSite) -> Result<()> {
    // SAFETY: owned handle, destroyed once.
    check("cuGraphExecDestroy", site, unsafe {
        cuGraphExecDestroy(e.0)
    })
}

pub(crate) fn graph_destroy(g: RawGraph, site: CallSite) -> Result<()> {
    // SAFETY: owned handle, destroyed once.
    check("cuGraphDestroy", site, unsafe { cuGraphDestroy(g.0) })
}

// ---------------------------------------------------------------------------------- NVRTC

/// NVRTC loaded at run time with `libloading` (no toolkit needed to build).
pub(crate) mod nvrtc {
    use std::ffi::{c_char, c_int, CStr, CString};
    use std::path::Path;

    use libloading::Library;

    type Program = *mut std::ffi::c_void;
    type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
    type CreateFn = unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int;
    type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
    type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
    type GetFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
    type DestroyFn = unsafe extern "C" fn(*mut Program) -> c_int;
    type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

    /// The NVRTC entry points we use, resolved once.
    pub(crate) struct Nvrtc {
        version: VersionFn,
        create: CreateFn,
        compile: CompileFn,
        ptx_size: SizeFn,
        ptx: GetFn,
        log_size: SizeFn,
        log: GetFn,
        destroy: DestroyFn,
        error_string: ErrorStringFn,
        // Keeps the function pointers above valid; declared last so it is dropped last.
        _builtins: Option<Library>,
        _lib: Library,
    }

    impl std::fmt::Debug for Nvrtc {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Nvrtc").finish_non_exhaustive()
        }
    }

    /// A failed NVRTC call: name, result code and NVRTC's description.
    #[derive(Debug, Clone)]
    pub(crate) struct CallError {
        pub(crate) call: &'static str,
        pub(crate) code: i32,
        pub(crate) message: String,
    }

    fn open(path: &Path) -> Result<Library, String> {
        // SAFETY: loading a shared library runs its initialisers; NVRTC's (and its builtins')
        // are plain C library initialisers with no preconditions on us.
        unsafe { Library::new(path) }.map_err(|e| e.to_string())
    }

    impl Nvrtc {
        /// Loads `lib` (a file name searched on the loader path, or a full path), after
        /// `builtins` when given (needed when `lib`'s folder is not on the loader path).
        pub(crate) fn open(lib: &Path, builtins: Option<&Path>) -> Result<Self, String> {
            let builtins = builtins.map(open).transpose()?;
            let l = open(lib)?;
            macro_rules! sym {
                ($name:literal) => {{
                    // SAFETY: the symbol is NVRTC's documented C function with exactly the
                    // signature named by the binding's type; the pointer is copied out and
                    // kept valid by storing `l` in the returned struct.
                    let s = unsafe { l.get(concat!($name, "\0").as_bytes()) }
                        .map_err(|e| format!("{}: {e}", $name))?;
                    *s
                }};
            }
            Ok(Self {
                version: sym!("nvrtcVersion"),
                create: sym!("nvrtcCreateProgram"),
                compile: sym!("nvrtcCompileProgram"),
                ptx_size: sym!("nvrtcGetPTXSize"),
                ptx: sym!("nvrtcGetPTX"),
                log_size: sym!("nvrtcGetProgramLogSize"),
                log: sym!("nvrtcGetProgramLog"),
                destroy: sym!("nvrtcDestroyProgram"),
                error_string: sym!("nvrtcGetErrorString"),
                _builtins: builtins,
                _lib: l,
            })
        }

        fn err(&self, call: &'static str, code: c_int) -> CallError {
            // SAFETY: nvrtcGetErrorString accepts any value and returns a static string (or
            // null, handled).
            let p = unsafe { (self.error_string)(code) };
            let message = if p.is_null() {
                "unknown NVRTC result".to_owned()
            } else {
                // SAFETY: non-null, NUL-terminated static string owned by NVRTC.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            };
            CallError {
                call,
                code,
                message,
            }
        }

        pub(crate) fn version(&self) -> Result<(i32, i32), CallError> {
            let (mut major, mut minor) = (0, 0);
            // SAFETY: valid out-pointers.
            let rc = unsafe { (self.version)(&mut major, &mut minor) };
            if rc != 0 {
                return Err(self.err("nvrtcVersion", rc));
            }
            Ok((major, minor))
        }

        /// Compiles `source` with `options`. Returns `Ok(Ok(ptx))`, or `Ok(Err(log))` when the
        /// source does not compile, or `Err` when an NVRTC call itself fails.
        pub(crate) fn compile(
            &self,
            name: &str,
            source: &str,
            options: &[String],
        ) -> Result<Result<String, String>, CallError> {
            let to_c = |s: &str, call| {
                CString::new(s).map_err(|_| CallError {
                    call,
                    code: -1,
                    message: format!("{s:?} contains a NUL byte"),
                })
            };
            let src = to_c(source, "nvrtcCreateProgram")?;
            let cname = to_c(name, "nvrtcCreateProgram")?;
            let opts = options
                .iter()
                .map(|o| to_c(o, "nvrtcCompileProgram"))
                .collect::<Result<Vec<_>, _>>()?;
            let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
            let mut prog: Program = std::ptr::null_mut();
            // SAFETY: NUL-terminated strings that outlive the call; zero headers.
            let rc = unsafe {
                (self.create)(
                    &mut prog,
                    src.as_ptr(),
                    cname.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(self.err("nvrtcCreateProgram", rc));
            }
            let result = self.compile_program(prog, &opt_ptrs);
            // SAFETY: `prog` was created above and is destroyed once.
            let rc = unsafe { (self.destroy)(&mut prog) };
            if rc != 0 {
                tracing::error!(target: "aegis_cuda", code = rc, "nvrtcDestroyProgram failed");
            }
            result
        }

        fn compile_program(
            &self,
            prog: Program,
            opts: &[*const c_char],
        ) -> Result<Result<String, String>, CallError> {
            let n = c_int::try_from(opts.len()).unwrap_or(c_int::MAX);
            // SAFETY: `prog` is live; `opts` holds `n` NUL-terminated strings that outlive the
            // call.
            let rc = unsafe { (self.compile)(prog, n, opts.as_ptr()) };
            // NVRTC_ERROR_COMPILATION (6): the source is wrong; the log says why.
            const COMPILATION: c_int = 6;
            if rc == COMPILATION {
                return Ok(Err(self.read(prog, self.log_size, self.log, "log")?));
            }
            if rc != 0 {
                return Err(self.err("nvrtcCompileProgram", rc));
            }
            Ok(Ok(self.read(prog, self.ptx_size, self.ptx, "ptx")?))
        }

        fn read(
            &self,
            prog: Program,
            size: SizeFn,
            get: GetFn,
            what: &'static str,
        ) -> Result<String, CallError> {
            let mut len = 0usize;
            // SAFETY: live program, valid out-pointer.
            let rc = unsafe { size(prog, &mut len) };
            if rc != 0 {
                return Err(self.err(
                    if what == "ptx" {
                        "nvrtcGetPTXSize"
                    } else {
                        "nvrtcGetProgramLogSize"
                    },
                    rc,
                ));
            }
            let mut buf = vec![0u8; len.max(1)];
            // SAFETY: `buf` holds the `len` bytes (including NUL) NVRTC said it will write.
            let rc = unsafe { get(prog, buf.as_mut_ptr().cast()) };
            if rc != 0 {
                return Err(self.err(
                    if what == "ptx" {
                        "nvrtcGetPTX"
                    } else {
                        "nvrtcGetProgramLog"
                    },
                    rc,
                ));
            }
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(end);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Categorized, ErrorCategory};

    /// Our table agrees with the values in `cust_raw`'s bindings for every code they share.
    #[test]
    fn code_table_matches_cust_raw() {
        use cu::cudaError_enum as E;
        for (e, name) in [
            (E::CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE"),
            (E::CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY"),
            (E::CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY"),
            (E::CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE"),
            (
                E::CUDA_ERROR_ECC_UNCORRECTABLE,
                "CUDA_ERROR_ECC_UNCORRECTABLE",
            ),
            (E::CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX"),
            (E::CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY"),
            (E::CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS"),
            (
                E::CUDA_ERROR_HARDWARE_STACK_ERROR,
                "CUDA_ERROR_HARDWARE_STACK_ERROR",
            ),
            (
                E::CUDA_ERROR_ILLEGAL_INSTRUCTION,
                "CUDA_ERROR_ILLEGAL_INSTRUCTION",
            ),
            (
                E::CUDA_ERROR_MISALIGNED_ADDRESS,
                "CUDA_ERROR_MISALIGNED_ADDRESS",
            ),
            (E::CUDA_ERROR_INVALID_PC, "CUDA_ERROR_INVALID_PC"),
            (E::CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED"),
            (
                E::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
                "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
            ),
            (E::CUDA_ERROR_EXTERNAL_DEVICE, "CUDA_ERROR_EXTERNAL_DEVICE"),
            (E::CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN"),
        ] {
            assert_eq!(DriverCode::from_raw(e as i32).name(), name);
        }
    }

    #[test]
    fn check_maps_codes_to_driver_errors() {
        let site = CallSite::here();
        assert!(check("cuInit", site, 0).is_ok());
        let err = check("cuLaunchKernel", site, 719).unwrap_err();
        assert_eq!(err.category(), ErrorCategory::Fatal);
        let text = err.to_string();
        assert!(
            text.contains("cuLaunchKernel") && text.contains("CUDA_ERROR_LAUNCH_FAILED"),
            "{text}"
        );
        assert!(text.contains(file!()), "call site missing: {text}");
        match check("cuMemAlloc_v2", site, 4242).unwrap_err() {
            CudaError::Driver {
                code,
                name,
                category,
                ..
            } => {
                assert_eq!(
                    (code, name, category),
                    (4242, "UNKNOWN", ErrorCategory::Fatal)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
