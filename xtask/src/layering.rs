//! The one-way crate chain, checked from `cargo metadata`.
//!
//! **Rationale**: layers that reach up or sideways make the lower layers untestable alone and
//! let graph or scheduling concerns leak into the device layer.

use std::path::Path;
use std::process::Command;

/// The chain, lowest first: a crate may depend only on crates to its left.
pub const CHAIN: &[&str] = &[
    "aegis-cuda",
    "aegis-memory",
    "aegis-exec",
    "aegis-sched",
    "aegis-context",
];

/// External crates confined to one layer (as normal dependencies).
const CONFINED: &[(&str, &str)] = &[
    ("cust", "aegis-cuda"),
    ("tract-onnx", "aegis-exec"),
    ("petgraph", "aegis-exec"),
];

/// Checks a list of (package, dependency, kind) edges; returns every violation.
pub fn violations(edges: &[(String, String, String)]) -> Vec<String> {
    let pos = |n: &str| CHAIN.iter().position(|c| *c == n);
    let mut out = Vec::new();
    for (pkg, dep, kind) in edges {
        if let (Some(p), Some(d)) = (pos(pkg), pos(dep)) {
            if d >= p {
                let dir = if d == p { "itself" } else { "up the chain" };
                out.push(format!(
                    "{pkg} depends on {dep} ({kind}): {dir}; allowed only leftwards in {CHAIN:?}"
                ));
            }
        }
        for (ext, home) in CONFINED {
            if dep == ext && pkg != home && kind == "normal" {
                out.push(format!("{pkg} depends on {ext}: only {home} may name it"));
            }
            // tract and petgraph must not appear below aegis-exec even as dev-dependencies.
            if dep == ext && *ext != "cust" && kind != "normal" {
                if let (Some(p), Some(h)) = (pos(pkg), pos(home)) {
                    if p < h {
                        out.push(format!("{pkg} depends on {ext} ({kind}): below {home}"));
                    }
                }
            }
        }
    }
    out
}

pub fn check(root: &Path) -> Result<(), String> {
    eprintln!("\n==> xtask: layering");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    let mut edges = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default().to_owned();
            let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
            edges.push((name.clone(), dep, kind));
        }
    }
    let v = violations(&edges);
    if v.is_empty() {
        eprintln!(
            "layering: {} dependency edges checked, chain {}",
            edges.len(),
            CHAIN.join(" -> ")
        );
        Ok(())
    } else {
        Err(format!("layering violations:\n  {}", v.join("\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: &str, b: &str, k: &str) -> (String, String, String) {
        (a.into(), b.into(), k.into())
    }

    #[test]
    fn catches_up_and_sideways_edges_and_confined_crates() {
        assert!(violations(&[e("aegis-exec", "aegis-memory", "normal")]).is_empty());
        assert_eq!(
            violations(&[e("aegis-memory", "aegis-exec", "normal")]).len(),
            1
        );
        assert_eq!(
            violations(&[e("aegis-cuda", "aegis-sched", "dev")]).len(),
            1
        );
        assert_eq!(violations(&[e("aegis-sched", "cust", "normal")]).len(), 1);
        assert_eq!(
            violations(&[e("aegis-memory", "petgraph", "normal")]).len(),
            1
        );
        assert_eq!(
            violations(&[e("aegis-memory", "tract-onnx", "dev")]).len(),
            1
        );
        assert!(violations(&[e("aegis-context", "tract-onnx", "dev")]).is_empty());
        assert!(violations(&[e("aegis-cuda", "cust", "normal")]).is_empty());
    }
}
