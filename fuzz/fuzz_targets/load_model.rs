//! Any byte string given to the loader yields `Ok` or a typed `ExecError`, never a panic,
//! an abort on allocation, or a hang.
#![no_main]

use aegis_exec::{ExecutionGraph, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reordering search is the memory layer's concern (and slow per input); the loader's
    // own checks are what is fuzzed here.
    let opts = LoadOptions {
        memory_aware_order: false,
        ..LoadOptions::default()
    };
    if let Ok(g) = ExecutionGraph::from_bytes(data, "fuzz", &opts) {
        // Exercise the accessors on whatever loaded.
        assert_eq!(g.topological_order().len(), g.operators().len());
        for t in g.tensors() {
            let n: u64 = t.shape.iter().map(|&d| d as u64).product();
            assert_eq!(t.byte_size, n * t.dtype.size_bytes());
        }
    }
});
