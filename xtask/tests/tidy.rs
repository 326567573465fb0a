//! `cargo xtask tidy` as a test, so `cargo test` alone also enforces it.

// `check` (the CLI entry) is unused here; the test calls `problems` directly.
#[allow(dead_code)]
#[path = "../src/tidy.rs"]
mod tidy;

#[test]
fn tree_is_tidy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let problems = tidy::problems(&root);
    assert!(
        problems.is_empty(),
        "tidy problems:\n{}",
        problems.join("\n")
    );
}
