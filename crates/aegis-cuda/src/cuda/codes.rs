//! The driver's `CUresult` codes: symbolic name and [`ErrorCategory`] for each.
//!
//! Compiled in every build (no driver needed), so the table is unit-tested on CI.
//!
//! Categories follow NVIDIA's driver API documentation of each code:
//! - **Fatal**: the documentation says the error leaves the context or process in an
//!   inconsistent state ("any further CUDA work will return the same error; to continue using
//!   CUDA, the process must be terminated and relaunched"): illegal address, launch failure,
//!   misaligned address, illegal instruction, hardware stack error, invalid PC, invalid address
//!   space, launch timeout, device-side assert, uncorrectable ECC/NVLink, contained errors, plus a
//!   destroyed or deinitialised context. Unknown codes are Fatal too: a code this build cannot
//!   classify may be sticky, and rebuilding a healthy context is cheap next to running on a broken
//!   one.
//! - **Transient**: retrying later can succeed (out of memory, not ready, busy device, MPS
//!   limits, timeouts).
//! - **Permanent**: everything else: this request can never succeed as given (invalid value,
//!   invalid PTX, no binary for the GPU, capture misuse, not supported, ...).

// Without the `cuda` feature only the tests use the table; it is compiled anyway so CI checks it.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use crate::error::ErrorCategory;

/// `CUDA_ERROR_STUB_LIBRARY`: returned by a stub `libcuda` (no driver installed).
#[cfg(test)]
pub(crate) const STUB_LIBRARY: i32 = 34;
/// `CUDA_ERROR_OUT_OF_MEMORY`.
pub(crate) const OUT_OF_MEMORY: i32 = 2;
/// `CUDA_ERROR_NOT_READY`: an asynchronous operation has not completed (not an error for
/// queries).
pub(crate) const NOT_READY: i32 = 600;

/// What a driver code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriverCode {
    /// A code this build knows.
    Known {
        /// Numeric value.
        code: i32,
        /// `CUDA_ERROR_*` name.
        name: &'static str,
        /// Documented category.
        category: ErrorCategory,
    },
    /// A code newer than this build's table (a newer driver): Fatal, named `UNKNOWN`.
    Unknown(i32),
}

impl DriverCode {
    /// Classifies a raw `CUresult`. Never fails: unknown values become [`DriverCode::Unknown`].
    pub(crate) fn from_raw(code: i32) -> Self {
        match TABLE.binary_search_by_key(&code, |e| e.0) {
            Ok(i) => {
                let (code, name, category) = TABLE[i];
                Self::Known {
                    code,
                    name,
                    category,
                }
            }
            Err(_) => Self::Unknown(code),
        }
    }

    /// The numeric code.
    pub(crate) fn code(self) -> i32 {
        match self {
            Self::Known { code, .. } | Self::Unknown(code) => code,
        }
    }

    /// Symbolic name, `UNKNOWN` for codes this build does not know.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Known { name, .. } => name,
            Self::Unknown(_) => "UNKNOWN",
        }
    }

    /// Category (see the module documentation).
    pub(crate) fn category(self) -> ErrorCategory {
        match self {
            Self::Known { category, .. } => category,
            Self::Unknown(_) => ErrorCategory::Fatal,
        }
    }
}

use ErrorCategory::{Fatal as F, Permanent as P, Transient as T};

/// Sorted by code (checked by a test) for binary search.
pub(crate) const TABLE: &[(i32, &str, ErrorCategory)] = &[
    (0, "CUDA_SUCCESS", P),
    (1, "CUDA_ERROR_INVALID_VALUE", P),
    (2, "CUDA_ERROR_OUT_OF_MEMORY", T),
    (3, "CUDA_ERROR_NOT_INITIALIZED", P),
    (4, "CUDA_ERROR_DEINITIALIZED", F),
    (5, "CUDA_ERROR_PROFILER_DISABLED", P),
    (6, "CUDA_ERROR_PROFILER_NOT_INITIALIZED", P),
    (7, "CUDA_ERROR_PROFILER_ALREADY_STARTED", P),
    (8, "CUDA_ERROR_PROFILER_ALREADY_STOPPED", P),
    (34, "CUDA_ERROR_STUB_LIBRARY", P),
    (46, "CUDA_ERROR_DEVICE_UNAVAILABLE", T),
    (100, "CUDA_ERROR_NO_DEVICE", P),
    (101, "CUDA_ERROR_INVALID_DEVICE", P),
    (102, "CUDA_ERROR_DEVICE_NOT_LICENSED", P),
    (200, "CUDA_ERROR_INVALID_IMAGE", P),
    (201, "CUDA_ERROR_INVALID_CONTEXT", P),
    (202, "CUDA_ERROR_CONTEXT_ALREADY_CURRENT", P),
    (205, "CUDA_ERROR_MAP_FAILED", P),
    (206, "CUDA_ERROR_UNMAP_FAILED", P),
    (207, "CUDA_ERROR_ARRAY_IS_MAPPED", P),
    (208, "CUDA_ERROR_ALREADY_MAPPED", P),
    (209, "CUDA_ERROR_NO_BINARY_FOR_GPU", P),
    (210, "CUDA_ERROR_ALREADY_ACQUIRED", P),
    (211, "CUDA_ERROR_NOT_MAPPED", P),
    (212, "CUDA_ERROR_NOT_MAPPED_AS_ARRAY", P),
    (213, "CUDA_ERROR_NOT_MAPPED_AS_POINTER", P),
    (214, "CUDA_ERROR_ECC_UNCORRECTABLE", F),
    (215, "CUDA_ERROR_UNSUPPORTED_LIMIT", P),
    (216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE", T),
    (217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", P),
    (218, "CUDA_ERROR_INVALID_PTX", P),
    (219, "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT", P),
    (220, "CUDA_ERROR_NVLINK_UNCORRECTABLE", F),
    (221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND", P),
    (222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", P),
    (223, "CUDA_ERROR_JIT_COMPILATION_DISABLED", P),
    (224, "CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY", P),
    (225, "CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC", P),
    (226, "CUDA_ERROR_CONTAINED", F),
    (300, "CUDA_ERROR_INVALID_SOURCE", P),
    (301, "CUDA_ERROR_FILE_NOT_FOUND", P),
    (302, "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND", P),
    (303, "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED", P),
    (304, "CUDA_ERROR_OPERATING_SYSTEM", P),
    (400, "CUDA_ERROR_INVALID_HANDLE", P),
    (401, "CUDA_ERROR_ILLEGAL_STATE", P),
    (402, "CUDA_ERROR_LOSSY_QUERY", P),
    (500, "CUDA_ERROR_NOT_FOUND", P),
    (600, "CUDA_ERROR_NOT_READY", T),
    (700, "CUDA_ERROR_ILLEGAL_ADDRESS", F),
    (701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", P),
    (702, "CUDA_ERROR_LAUNCH_TIMEOUT", F),
    (703, "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING", P),
    (704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", P),
    (705, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED", P),
    (708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", P),
    (709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", F),
    (710, "CUDA_ERROR_ASSERT", F),
    (711, "CUDA_ERROR_TOO_MANY_PEERS", P),
    (712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", P),
    (713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", P),
    (714, "CUDA_ERROR_HARDWARE_STACK_ERROR", F),
    (715, "CUDA_ERROR_ILLEGAL_INSTRUCTION", F),
    (716, "CUDA_ERROR_MISALIGNED_ADDRESS", F),
    (717, "CUDA_ERROR_INVALID_ADDRESS_SPACE", F),
    (718, "CUDA_ERROR_INVALID_PC", F),
    (719, "CUDA_ERROR_LAUNCH_FAILED", F),
    (720, "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", P),
    (721, "CUDA_ERROR_TENSOR_MEMORY_LEAK", F),
    (800, "CUDA_ERROR_NOT_PERMITTED", P),
    (801, "CUDA_ERROR_NOT_SUPPORTED", P),
    (802, "CUDA_ERROR_SYSTEM_NOT_READY", T),
    (803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", P),
    (804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", P),
    (805, "CUDA_ERROR_MPS_CONNECTION_FAILED", T),
    (806, "CUDA_ERROR_MPS_RPC_FAILURE", T),
    (807, "CUDA_ERROR_MPS_SERVER_NOT_READY", T),
    (808, "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED", T),
    (809, "CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED", T),
    (810, "CUDA_ERROR_MPS_CLIENT_TERMINATED", F),
    (811, "CUDA_ERROR_CDP_NOT_SUPPORTED", P),
    (812, "CUDA_ERROR_CDP_VERSION_MISMATCH", P),
    (900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", P),
    (901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", P),
    (902, "CUDA_ERROR_STREAM_CAPTURE_MERGE", P),
    (903, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", P),
    (904, "CUDA_ERROR_STREAM_CAPTURE_UNJOINED", P),
    (905, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION", P),
    (906, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT", P),
    (907, "CUDA_ERROR_CAPTURED_EVENT", P),
    (908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", P),
    (909, "CUDA_ERROR_TIMEOUT", T),
    (910, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE", P),
    (911, "CUDA_ERROR_EXTERNAL_DEVICE", F),
    (912, "CUDA_ERROR_INVALID_CLUSTER_SIZE", P),
    (913, "CUDA_ERROR_FUNCTION_NOT_LOADED", P),
    (914, "CUDA_ERROR_INVALID_RESOURCE_TYPE", P),
    (915, "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION", P),
    (916, "CUDA_ERROR_KEY_ROTATION", P),
    (999, "CUDA_ERROR_UNKNOWN", F),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn names_match_codes_for_spot_checks() {
        for (code, name) in [
            (1, "CUDA_ERROR_INVALID_VALUE"),
            (2, "CUDA_ERROR_OUT_OF_MEMORY"),
            (34, "CUDA_ERROR_STUB_LIBRARY"),
            (218, "CUDA_ERROR_INVALID_PTX"),
            (700, "CUDA_ERROR_ILLEGAL_ADDRESS"),
            (719, "CUDA_ERROR_LAUNCH_FAILED"),
        ] {
            assert_eq!(DriverCode::from_raw(code).name(), name);
            assert_eq!(DriverCode::from_raw(code).code(), code);
        }
    }

    #[test]
    fn sticky_errors_are_fatal() {
        // The codes NVIDIA documents as leaving the context unusable.
        for code in [
            214, 220, 226, 700, 702, 709, 710, 714, 715, 716, 717, 718, 719, 911,
        ] {
            assert_eq!(
                DriverCode::from_raw(code).category(),
                ErrorCategory::Fatal,
                "{code} ({})",
                DriverCode::from_raw(code).name()
            );
        }
    }

    #[test]
    fn resource_exhaustion_is_transient() {
        for code in [OUT_OF_MEMORY, NOT_READY, 46, 909] {
            assert_eq!(
                DriverCode::from_raw(code).category(),
                ErrorCategory::Transient
            );
        }
    }

    #[test]
    fn bad_requests_are_permanent() {
        // invalid value, stub library, no device, invalid image, invalid PTX, no binary for the
        // GPU, unsupported PTX version, not found, launch out of resources, capture misuse.
        for code in [1, STUB_LIBRARY, 100, 200, 209, 218, 222, 500, 701, 900, 901] {
            assert_eq!(
                DriverCode::from_raw(code).category(),
                ErrorCategory::Permanent
            );
        }
    }

    #[test]
    fn unknown_codes_never_fail_and_are_fatal() {
        for code in [-1, 9, 703_000, 917, 1000, i32::MAX, i32::MIN] {
            let c = DriverCode::from_raw(code);
            assert_eq!(c, DriverCode::Unknown(code));
            assert_eq!(c.name(), "UNKNOWN");
            assert_eq!(c.code(), code);
            assert_eq!(c.category(), ErrorCategory::Fatal);
        }
    }
}
