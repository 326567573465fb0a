//! Shared by the fixture test binaries (`recurrent`, `arch_blocks`): the case folders under
//! `tests/fixtures/<set>` and their numbered `.npy` tensors.

use std::path::{Path, PathBuf};

use aegis_exec::HostTensor;

/// The case folders of `tests/fixtures/<set>`, sorted.
pub fn fixtures(set: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    cases
}

/// `<prefix>_0.npy`, `<prefix>_1.npy`, ... in `dir`, up to the first missing one.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<HostTensor> {
    (0..)
        .map(|k| dir.join(format!("{prefix}_{k}.npy")))
        .take_while(|p| p.is_file())
        .map(|p| HostTensor::read_npy(&p).unwrap())
        .collect()
}
